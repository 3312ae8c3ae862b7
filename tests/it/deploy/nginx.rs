//! nginx running the shipped configuration (`deploy/nginx/`) on loopback: a throw-away
//! certificate, the site config rendered with its placeholders replaced, and nginx itself
//! in the foreground.

use super::*;

/// A throw-away self-signed certificate for `SITE`, made with openssl.
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certificate {
    pub fn make(openssl: &Path, dir: &Scratch) -> Certificate {
        let cert = dir.path("cert.pem");
        let key = dir.path("key.pem");
        let output = Command::new(openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
            ])
            .arg(format!("/CN={SITE}"))
            .arg("-addext")
            .arg(format!("subjectAltName=DNS:{SITE}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Certificate { cert, key }
    }
}

/// The shipped nginx configuration, with its placeholders (and only those) replaced for
/// loopback: listen addresses, the site's name, the certificate, the instances.
pub fn render_site_config(https: u16, http: u16, cert: &Certificate, upstreams: &[u16]) -> String {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/nginx/portcullis.conf"
    ))
    .expect("read deploy/nginx/portcullis.conf");
    let servers: Vec<String> = upstreams
        .iter()
        .map(|port| format!("server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;"))
        .collect();
    // Directive as shipped → its loopback rendering (`None`: drop the line, IPv6 listeners).
    let replacements: Vec<(String, Option<String>)> = vec![
        (
            "listen 80;".into(),
            Some(format!("listen 127.0.0.1:{http};")),
        ),
        ("listen [::]:80;".into(), None),
        (
            "listen 80 default_server;".into(),
            Some(format!("listen 127.0.0.1:{http} default_server;")),
        ),
        ("listen [::]:80 default_server;".into(), None),
        (
            "listen 443 ssl default_server;".into(),
            Some(format!("listen 127.0.0.1:{https} ssl default_server;")),
        ),
        ("listen [::]:443 ssl default_server;".into(), None),
        (
            "listen 443 ssl http2;".into(),
            Some(format!("listen 127.0.0.1:{https} ssl http2;")),
        ),
        ("listen [::]:443 ssl http2;".into(), None),
        (
            "server_name portcullis.example.org;".into(),
            Some(format!("server_name {SITE};")),
        ),
        (
            "return 301 https://portcullis.example.org$request_uri;".into(),
            Some(format!("return 301 https://{SITE}:{https}$request_uri;")),
        ),
        (
            "ssl_certificate     /etc/ssl/portcullis/fullchain.pem;".into(),
            Some(format!("ssl_certificate {};", cert.cert.display())),
        ),
        (
            "ssl_certificate_key /etc/ssl/portcullis/privkey.pem;".into(),
            Some(format!("ssl_certificate_key {};", cert.key.display())),
        ),
        (
            "server 127.0.0.1:3001 max_fails=1 fail_timeout=5s;".into(),
            Some(servers.join("\n    ")),
        ),
        (
            "server 127.0.0.1:3002 max_fails=1 fail_timeout=5s;".into(),
            Some(String::new()),
        ),
    ];
    let mut used = vec![0usize; replacements.len()];
    let mut rendered = String::new();
    for line in shipped.lines() {
        let placeholder = line
            .split_once("# PLACEHOLDER")
            .filter(|_| !line.trim_start().starts_with('#'));
        let Some((directive, _)) = placeholder else {
            rendered.push_str(line);
            rendered.push('\n');
            continue;
        };
        let directive = directive.trim();
        let index = replacements
            .iter()
            .position(|(shipped, _)| shipped == directive)
            .unwrap_or_else(|| panic!("no loopback rendering for placeholder line {line:?}"));
        used[index] += 1;
        if let Some(replacement) = &replacements[index].1 {
            let indent = &line[..line.len() - line.trim_start().len()];
            rendered.push_str(&format!("{indent}{replacement}\n"));
        }
    }
    for ((shipped, _), count) in replacements.iter().zip(used) {
        assert!(
            count > 0,
            "the shipped config no longer has the placeholder {shipped:?}"
        );
    }
    let directives = rendered
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'));
    for line in directives {
        assert!(
            !line.contains("portcullis.example.org") && !line.contains("/etc/ssl/portcullis"),
            "a placeholder was left unreplaced: {line}"
        );
    }
    rendered
}

/// nginx in the foreground (`daemon off`), with everything it writes in a scratch
/// directory. Stopped (SIGTERM, workers included) when dropped.
pub struct Nginx {
    child: Option<Child>,
    dir: PathBuf,
    pub https: u16,
    pub http: u16,
}

impl Nginx {
    /// Renders the shipped config for loopback, checks it with `nginx -t`, starts nginx
    /// and waits until it accepts connections.
    pub fn start(nginx: &Path, dir: &Scratch, cert: &Certificate, upstreams: &[u16]) -> Nginx {
        let (https, http) = (free_port(), free_port());
        let temp = dir.path("nginx-temp");
        std::fs::create_dir_all(&temp).expect("mkdir");
        // Workers run as an unprivileged user when nginx starts as root.
        std::fs::set_permissions(&temp, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod");
        std::fs::write(
            dir.path("portcullis.conf"),
            render_site_config(https, http, cert, upstreams),
        )
        .expect("write site config");
        // The TLS settings, where the site config's relative `include
        // snippets/portcullis-tls.conf` finds them: under nginx's configuration directory,
        // here the scratch directory that holds nginx.conf.
        std::fs::create_dir_all(dir.path("snippets")).expect("mkdir snippets");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/deploy/nginx/portcullis-tls.conf"
            ),
            dir.path("snippets/portcullis-tls.conf"),
        )
        .expect("copy deploy/nginx/portcullis-tls.conf");
        let main = format!(
            "daemon off;\n\
             worker_processes 2;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             \x20   log_format upstream '$remote_addr \"$request\" $status upstream=$upstream_addr \
                     upstream_status=$upstream_status time=$request_time';\n\
             \x20   access_log {dir}/access.log upstream;\n\
             \x20   client_body_temp_path {temp}/body;\n\
             \x20   proxy_temp_path {temp}/proxy;\n\
             \x20   fastcgi_temp_path {temp}/fastcgi;\n\
             \x20   uwsgi_temp_path {temp}/uwsgi;\n\
             \x20   scgi_temp_path {temp}/scgi;\n\
             \x20   include {dir}/portcullis.conf;\n\
             }}\n",
            dir = dir.0.display(),
            temp = temp.display(),
        );
        let conf = dir.path("nginx.conf");
        std::fs::write(&conf, main).expect("write nginx.conf");
        let error_log = dir.path("error.log");
        let test = Command::new(nginx)
            .arg("-t")
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&error_log)
            .output()
            .expect("run nginx -t");
        assert!(
            test.status.success(),
            "nginx -t refuses the shipped config:\n{}",
            String::from_utf8_lossy(&test.stderr)
        );
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut command, libc::SIGTERM);
        let child = command.spawn().expect("start nginx");
        let mut started = Nginx {
            child: Some(child),
            dir: dir.0.clone(),
            https,
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", https)).is_err() {
            if let Some(Ok(Some(status))) = started.child.as_mut().map(Child::try_wait) {
                panic!("nginx exited with {status}:\n{}", started.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s:\n{}",
                started.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        started
    }

    pub fn base(&self) -> String {
        format!("https://{SITE}:{}", self.https)
    }

    /// One TLS connection for `SITE` with `openssl s_client` and its `options` (`-tls1_3`,
    /// `-sess_out FILE`, …) that sends `GET /healthz` over HTTP/1.0 and reads until nginx
    /// closes: a TLS 1.3 server sends its session tickets after the handshake, and an
    /// s_client that quit at once would never see them. At most 10 s.
    pub fn tls_probe(&self, openssl: &Path, options: &[&str]) -> TlsProbe {
        let output_path = self.dir.join(format!(
            "s_client-{}.out",
            NEXT_PROBE.fetch_add(1, Ordering::Relaxed)
        ));
        let output = std::fs::File::create(&output_path).expect("create s_client.out");
        let mut child = Command::new(openssl)
            .arg("s_client")
            .arg("-connect")
            .arg(format!("127.0.0.1:{}", self.https))
            .args(["-servername", SITE, "-ign_eof"])
            .args(options)
            .stdin(Stdio::piped())
            .stdout(output.try_clone().expect("dup"))
            .stderr(output)
            .spawn()
            .expect("run openssl s_client");
        let request = format!(
            "GET /healthz HTTP/1.0\r\nHost: {SITE}:{}\r\n\r\n",
            self.https
        );
        if let Some(mut stdin) = child.stdin.take() {
            // Fails only if s_client already exited, which its output then explains.
            let _ = stdin.write_all(request.as_bytes());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().expect("wait for s_client").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = std::fs::read_to_string(&output_path).unwrap_or_default();
        // `New, TLSv1.3, Cipher is …` or `Reused, TLSv1.3, …` (`New, (NONE), …` when the
        // handshake failed).
        let summary = output
            .lines()
            .find(|line| line.starts_with("New, ") || line.starts_with("Reused, "))
            .unwrap_or_default();
        let mut fields = summary.split(", ");
        let reused = fields.next() == Some("Reused");
        let protocol = fields.next().unwrap_or("(no handshake)").to_owned();
        TlsProbe {
            protocol,
            reused,
            output,
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// The master's and the workers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        let Some(master) = self.child.as_ref().map(Child::id) else {
            return Vec::new();
        };
        let mut pids = vec![master];
        pids.extend(children_of(master));
        pids
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// A browser on `source` (a loopback address of its own, so that nginx sees it as a
    /// client distinct from itself), with its own cookie jar; trusts the throw-away
    /// certificate; follows no redirects.
    pub fn visitor(&self, source: Ipv4Addr) -> Visitor {
        let client = Client::builder()
            .use_rustls_tls()
            .danger_accept_invalid_certs(true)
            .resolve(SITE, SocketAddr::from(([127, 0, 0, 1], self.https)))
            .local_address(IpAddr::V4(source))
            .cookie_provider(Arc::new(Jar::default()))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Visitor {
            client,
            base: self.base(),
        }
    }
}

static NEXT_PROBE: AtomicUsize = AtomicUsize::new(0);

/// What `openssl s_client` reported about one connection.
#[derive(Debug)]
pub struct TlsProbe {
    /// The negotiated protocol, e.g. `TLSv1.3`.
    pub protocol: String,
    /// Whether the session was resumed (an abbreviated handshake).
    pub reused: bool,
    /// Everything s_client printed, for the failure message.
    pub output: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let master = nix::unistd::Pid::from_raw(child.id() as i32);
        // The master stops its workers on SIGTERM; if it does not exit, kill them all.
        let workers = children_of(child.id());
        let _ = nix::sys::signal::kill(master, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for worker in workers {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(worker as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
