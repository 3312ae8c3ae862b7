// The browser's time zone (progressive enhancement): the server shows times in UTC until a
// person chooses a zone, and cannot know the browser's. Where the browser's zone differs
// from the one the page shows, this offers it ("Use my browser's time zone", a form with a
// hidden field) and, on the time zone page, selects it in the list if none is chosen yet.
// Without JavaScript the list alone works; nothing is saved without a click.
'use strict';

(() => {
  const offer = document.querySelector('form[data-browser-zone]');
  const shown = document.querySelector('[data-time-zone]');
  if (!offer || !shown) {
    return;
  }
  let zone = '';
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || '';
  } catch (_) {
    return;
  }
  // The server checks the name against its list; this only avoids offering what it is
  // sure to refuse ("Etc/Unknown", or a zone missing from the list shown).
  const select = document.querySelector('select[name="time_zone"]');
  const plausible = select
    ? Array.from(select.options).some((o) => o.value === zone)
    : zone === 'UTC' || /^[A-Z][A-Za-z_]+\/[A-Za-z_\/+-]+$/.test(zone);
  if (!zone || !plausible || zone === shown.dataset.timeZone || zone.startsWith('Etc/')) {
    return;
  }
  offer.querySelector('input[name="time_zone"]').value = zone;
  offer.querySelector('[data-browser-zone-name]').textContent = zone;
  offer.hidden = false;
  if (select && shown.dataset.chosen !== 'true') {
    select.value = zone;
  }
})();
