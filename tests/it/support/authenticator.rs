//! A software passkey for HTTP tests: what a platform authenticator and the browser's
//! WebAuthn code together hand the server (ES256 key, "none" attestation, user verified),
//! built from the server's own options so the whole ceremony is checked by webauthn-rs
//! without a browser. The browser suite uses Chromium's virtual authenticator instead.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use openssl::{
    bn::BigNumContext,
    ec::{EcGroup, EcKey},
    ecdsa::EcdsaSig,
    nid::Nid,
    pkey::Private,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub struct SoftPasskey {
    key: EcKey<Private>,
    pub credential_id: Vec<u8>,
    pub user_handle: Vec<u8>,
    rp_id: String,
    pub counter: u32,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(text.as_str().expect("a base64url string"))
        .expect("base64url")
}

/// Minimal CBOR, enough for an attestation object and a COSE key.
fn cbor_head(major: u8, len: usize, out: &mut Vec<u8>) {
    match len {
        0..=23 => out.push(major << 5 | len as u8),
        24..=255 => out.extend([major << 5 | 24, len as u8]),
        _ => {
            out.push(major << 5 | 25);
            out.extend((len as u16).to_be_bytes());
        }
    }
}

fn cbor_text(text: &str, out: &mut Vec<u8>) {
    cbor_head(3, text.len(), out);
    out.extend(text.as_bytes());
}

fn cbor_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    cbor_head(2, bytes.len(), out);
    out.extend(bytes);
}

fn client_data(kind: &str, challenge: &Value, origin: &str) -> Vec<u8> {
    json!({
        "type": kind,
        "challenge": challenge,
        "origin": origin.trim_end_matches('/'),
        "crossOrigin": false,
    })
    .to_string()
    .into_bytes()
}

/// UP (user present) and UV (user verified).
const PRESENT_AND_VERIFIED: u8 = 0x01 | 0x04;
const ATTESTED_DATA: u8 = 0x40;

impl SoftPasskey {
    /// Answers the server's creation options (`{"publicKey": …}`) at `origin`: the new
    /// passkey and the JSON `static/passkeys.js` would post.
    pub fn register(options: &Value, origin: &str) -> (SoftPasskey, String) {
        let public_key = &options["publicKey"];
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
        let key = EcKey::generate(&group).expect("key");
        let credential_id: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        let mut passkey = SoftPasskey {
            key,
            credential_id,
            user_handle: unb64(&public_key["user"]["id"]),
            rp_id: public_key["rp"]["id"].as_str().expect("rp id").to_owned(),
            counter: 0,
        };
        let client_data = client_data("webauthn.create", &public_key["challenge"], origin);
        let mut auth_data = passkey.auth_data(PRESENT_AND_VERIFIED | ATTESTED_DATA);
        auth_data.extend([0u8; 16]); // AAGUID: none
        auth_data.extend((passkey.credential_id.len() as u16).to_be_bytes());
        auth_data.extend(&passkey.credential_id);
        auth_data.extend(passkey.cose_key());
        let mut attestation = Vec::new();
        cbor_head(5, 3, &mut attestation);
        cbor_text("fmt", &mut attestation);
        cbor_text("none", &mut attestation);
        cbor_text("attStmt", &mut attestation);
        cbor_head(5, 0, &mut attestation);
        cbor_text("authData", &mut attestation);
        cbor_bytes(&auth_data, &mut attestation);
        let answer = json!({
            "id": b64(&passkey.credential_id),
            "rawId": b64(&passkey.credential_id),
            "type": "public-key",
            "response": {
                "attestationObject": b64(&attestation),
                "clientDataJSON": b64(&client_data),
                "transports": ["internal"],
            },
            "clientExtensionResults": { "credProps": { "rk": true } },
        });
        passkey.counter += 1;
        (passkey, answer.to_string())
    }

    /// Answers the server's request options (`{"publicKey": …}`) at `origin`: the JSON
    /// `static/passkeys.js` would post. Each answer counts up the signature counter.
    pub fn assert(&mut self, options: &Value, origin: &str) -> String {
        let public_key = &options["publicKey"];
        let client_data = client_data("webauthn.get", &public_key["challenge"], origin);
        self.counter += 1;
        let auth_data = self.auth_data(PRESENT_AND_VERIFIED);
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(&client_data));
        let digest = Sha256::digest(&signed);
        let signature = EcdsaSig::sign(&digest, &self.key)
            .and_then(|sig| sig.to_der())
            .expect("signature");
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(&signature),
                "userHandle": b64(&self.user_handle),
            },
            "clientExtensionResults": {},
        })
        .to_string()
    }

    fn auth_data(&self, flags: u8) -> Vec<u8> {
        let mut data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        data.push(flags);
        data.extend(self.counter.to_be_bytes());
        data
    }

    /// The public key as COSE (EC2, ES256, P-256).
    fn cose_key(&self) -> Vec<u8> {
        let group = self.key.group();
        let mut x = openssl::bn::BigNum::new().expect("bn");
        let mut y = openssl::bn::BigNum::new().expect("bn");
        let mut ctx = BigNumContext::new().expect("ctx");
        self.key
            .public_key()
            .affine_coordinates(group, &mut x, &mut y, &mut ctx)
            .expect("coordinates");
        let x = x.to_vec_padded(32).expect("x");
        let y = y.to_vec_padded(32).expect("y");
        // {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}
        let mut out = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        cbor_bytes(&x, &mut out);
        out.push(0x22);
        cbor_bytes(&y, &mut out);
        out
    }
}
