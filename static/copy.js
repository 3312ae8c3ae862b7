// "Copy" buttons for one-time links (the admin's link page). Progressive enhancement: the
// link is a read-only field people can select and copy without JavaScript; the button is
// `hidden` in the HTML and shown here only when the browser can copy.
'use strict';

(() => {
  for (const button of document.querySelectorAll('button[data-copy]')) {
    const field = document.getElementById(button.dataset.copy);
    const status = document.getElementById(button.dataset.copyStatus);
    if (!field) {
      continue;
    }
    button.hidden = false;
    button.addEventListener('click', async () => {
      field.focus();
      field.select();
      let copied = false;
      try {
        if (navigator.clipboard && window.isSecureContext) {
          await navigator.clipboard.writeText(field.value);
          copied = true;
        } else {
          copied = document.execCommand('copy');
        }
      } catch (_) {
        copied = false;
      }
      if (status) {
        status.textContent = copied
          ? 'Copied. Paste it into a message to the person.'
          : 'Could not copy: the link is selected, copy it with your keyboard.';
      }
    });
  }
  // Selecting the whole link on focus makes copying it by hand one step.
  for (const field of document.querySelectorAll('input[data-select-all]')) {
    field.addEventListener('focus', () => field.select());
  }
})();
