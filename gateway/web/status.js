// airq web page: the result's status line: the flow's state and what it
// says (also in the tab's title), the time elapsed, and the result's link
// while a queued query is followed.

import { state } from './state.js';
import { $, fmtDuration } from './util.js';
import { resultUrl } from './form.js';

let elapsedTimer = null;
let elapsedSince = 0;

// The tab's title for the flow's state (setStatus sets it).
let stateTitle = document.title;

export function setStatus(stateName, text) {
  const box = $('status');
  box.dataset.state = stateName;
  $('status-text').textContent = text;
  const titles = { queued: 'Queued', running: 'Running', submitting: 'Running', failed: 'Failed' };
  stateTitle = titles[stateName] ? `${titles[stateName]} · airq` : 'airq · air-quality readings';
  document.title = stateTitle;
}

// While the tab is hidden, `title` is its title (what the flow came to,
// seen from another tab: "Done (1,234 readings) · airq"), until the tab is
// seen again (the state's own title then) or the state changes.
export function titleWhileHidden(title) {
  if (!document.hidden) return;
  document.title = title;
  const back = () => {
    if (document.hidden) return;
    document.removeEventListener('visibilitychange', back);
    if (document.title === title) document.title = stateTitle;
  };
  document.addEventListener('visibilitychange', back);
}

function tickElapsed() {
  $('elapsed').textContent = `· ${fmtDuration(Date.now() - elapsedSince)}`;
}

export function startElapsed(since) {
  elapsedSince = since;
  tickElapsed();
  if (elapsedTimer === null) elapsedTimer = setInterval(tickElapsed, 500);
}

export function stopElapsed(keep) {
  if (elapsedTimer !== null) clearInterval(elapsedTimer);
  elapsedTimer = null;
  if (!keep) $('elapsed').textContent = '';
}

export function showLink(id) {
  const box = $('status-link');
  if (!id) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const url = resultUrl(id, state.shownQuery);
  const a = document.createElement('a');
  a.href = url;
  a.id = 'result-link';
  a.textContent = 'this result’s link';
  box.replaceChildren('You can leave this page and come back, or share the result, with ', a, '.');
  box.hidden = false;
}

export function revealResults() {
  const r = $('results').getBoundingClientRect();
  if (r.top > window.innerHeight * 0.8) $('results').scrollIntoView({ block: 'start' });
}
