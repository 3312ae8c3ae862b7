// The account page's time zone, from the browser (progressive enhancement): the server
// shows times in UTC until a person chooses a zone, and cannot know the browser's. Where
// the browser names a zone the list has, this offers it ("Use my browser's time zone")
// and, if none is chosen yet, selects it in the list. Without JavaScript the list alone
// works; nothing is saved without a click.
'use strict';

(() => {
  const offer = document.querySelector('form[data-browser-zone]');
  const choice = document.querySelector('form[data-time-zone]');
  if (!offer || !choice) {
    return;
  }
  let zone = '';
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || '';
  } catch (_) {
    return;
  }
  const select = choice.querySelector('select');
  const known = select && Array.from(select.options).some((o) => o.value === zone);
  if (!zone || !known || zone === choice.dataset.timeZone) {
    return;
  }
  offer.querySelector('input[name="time_zone"]').value = zone;
  offer.querySelector('[data-browser-zone-name]').textContent = zone;
  offer.hidden = false;
  if (choice.dataset.chosen !== 'true') {
    select.value = zone;
  }
})();
