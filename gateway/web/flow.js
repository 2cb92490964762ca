// airq web page: the result flows. A submit sends the form's query and
// shows the answer, or follows the queued result until it is done, failed
// or gone (its event stream, else polling); a link naming a result
// resumes following it. An answer is read as it downloads (result.js's
// readAnswer, parsed off the page's thread), and a newer flow stops that
// too: its request is aborted and the older reading's worker ended.

import { state, optionsLoaded } from './state.js';
import { $, fmtDuration, fmtQuick, parseDateTime, sleep } from './util.js';
import {
  errorText, getResult, postQuery, queryOfResult, readJson, retryAfter,
} from './api.js';
import {
  clearErrors, fillForm, queryFromUrl, readForm, resultFromUrl, resultUrl, setResultInUrl, showErrors,
} from './form.js';
import {
  revealResults, setStatus, showLink, startElapsed, stopElapsed,
} from './status.js';
import { hideResult, readAnswer, showResult } from './result.js';

// Consecutive failed polls (network errors, 503s) before giving up.
const MAX_POLL_FAILURES = 10;
// Connection errors an event stream may have before the page polls
// instead (an EventSource reconnects by itself after each).
const MAX_STREAM_ERRORS = 3;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Each submit or resume starts a new flow; an older one stops at its
// next step when it sees that `flow` moved on.
let flow = 0;
let inFlight = null;

export async function submit(event) {
  event.preventDefault();
  if (!optionsLoaded()) {
    setStatus('error', 'The page has not loaded the query options from the server yet; it keeps trying.');
    return;
  }
  clearErrors();
  const { errors, body } = readForm();
  if (errors.length) {
    showErrors(errors);
    return;
  }
  const my = ++flow;
  if (inFlight) inFlight.abort();
  inFlight = new AbortController();
  state.shownQuery = body;
  const queue = $('background').checked;
  hideResult();
  showLink(null);
  setStatus('submitting', queue ? 'Sending the query to the queue…' : 'Running the query…');
  startElapsed(Date.now());
  revealResults();
  const started = Date.now();
  let resp;
  try {
    resp = await postQuery(body, queue, inFlight.signal);
  } catch (e) {
    if (my !== flow) return;
    stopElapsed();
    setStatus('error', `Could not reach the server (${e.message}). Check the connection and submit again.`);
    return;
  }
  if (my !== flow) return;
  try {
    if (resp.status === 200) {
      // Read as it downloads (off this thread); null once a newer flow
      // has begun.
      const answer = await readAnswer(resp, () => my === flow);
      if (!answer || my !== flow) return;
      setResultInUrl(null);
      await showResult(answer, `answered directly in ${fmtQuick(answer.receivedAt - started)}`);
    } else if (resp.status === 202) {
      const info = await readJson(resp);
      const id = info && typeof info.id === 'string' ? info.id : '';
      if (!UUID_RE.test(id)) throw new Error('the server queued the query but sent no result id');
      if (my !== flow) return;
      setResultInUrl(id, body);
      await poll(id, my, info);
    } else {
      const info = await readJson(resp);
      if (my !== flow) return;
      stopElapsed();
      if (info && Array.isArray(info.fields) && info.fields.length) {
        setStatus('error', 'The server did not accept the query.');
        showErrors(info.fields, 'The server did not accept the query.');
      } else if (resp.status === 503) {
        setStatus('error', `The service is busy (${errorText(resp, info)}). Try again in ${retryAfter(resp, 5)} s.`);
      } else if (resp.status === 429) {
        setStatus('error', `Too many queries from here for now (${errorText(resp, info)}).`);
      } else {
        setStatus('error', `The query failed: ${errorText(resp, info)}.`);
      }
    }
  } catch (e) {
    if (my !== flow || e.name === 'AbortError') return;
    stopElapsed();
    setStatus('error', `The query failed: ${e.message}.`);
  }
}

const STATE_TEXT = {
  queued: 'Queued: waiting for a worker…',
  running: 'Running: a worker is answering the query…',
};

// Waits on the result's event stream (GET /api/results/{id}/events),
// showing each state, until it says the result is done, failed or gone:
// resolves true then (the answer or the reason is one GET away), false
// when the stream cannot be had (refused, or no EventSource), so that the
// caller polls instead.
function awaitEvents(id, my, note) {
  return new Promise((resolve) => {
    if (typeof EventSource !== 'function') {
      resolve(false);
      return;
    }
    const es = new EventSource(`/api/results/${encodeURIComponent(id)}/events`);
    let errors = 0;
    let watch = null;
    const end = (ok) => {
      es.close();
      clearInterval(watch);
      resolve(ok);
    };
    // A newer submit or resume ends this one.
    watch = setInterval(() => { if (my !== flow) end(true); }, 250);
    for (const name of ['queued', 'running']) {
      es.addEventListener(name, (e) => {
        errors = 0;
        try { note(JSON.parse(e.data)); } catch (_) { /* a state without details */ }
      });
    }
    for (const name of ['done', 'failed', 'expired']) es.addEventListener(name, () => end(true));
    es.onerror = () => {
      // CLOSED: refused (404, 410, 429, 503: polling says why); otherwise
      // the browser reconnects with Last-Event-ID by itself.
      errors += 1;
      if (es.readyState === EventSource.CLOSED || errors > MAX_STREAM_ERRORS) end(false);
    };
  });
}

// Follows a queued result until it is done, failed or gone.
async function poll(id, my, first) {
  showLink(id);
  let since = Date.now();
  let waited = Boolean(first);
  const note = (info) => {
    const s = info && (info.status === 'running' || info.status === 'queued') ? info.status : 'queued';
    setStatus(s, STATE_TEXT[s]);
    // Elapsed time counts from the query's creation, so it survives a
    // reload; a clock ahead of ours falls back to our own start.
    const created = info && typeof info.createdAt === 'string' ? parseDateTime(info.createdAt) : null;
    if (created && created.seconds * 1000 <= Date.now() + 2000) since = Math.min(since, created.seconds * 1000);
    startElapsed(since);
  };
  note(first);
  await awaitEvents(id, my, (info) => {
    if (my !== flow) return;
    waited = true;
    note(info);
  });
  let failures = 0;
  const signal = inFlight ? inFlight.signal : undefined;
  while (my === flow) {
    let resp;
    try {
      resp = await getResult(id, signal);
    } catch (e) {
      if (my !== flow || e.name === 'AbortError') return;
      failures += 1;
      if (failures > MAX_POLL_FAILURES) {
        stopElapsed();
        setStatus('error', `Lost contact with the server (${e.message}). The query goes on: reload this page to look again.`);
        return;
      }
      $('status-text').textContent = `Connection problem; retrying (${failures}/${MAX_POLL_FAILURES})…`;
      await sleep(Math.min(30, 2 ** failures) * 1000);
      continue;
    }
    if (my !== flow) return;
    if (resp.status === 202) {
      failures = 0;
      waited = true;
      note(await readJson(resp));
      await sleep(retryAfter(resp, 1) * 1000);
    } else if (resp.status === 200) {
      const answer = await readAnswer(resp, () => my === flow);
      if (!answer || my !== flow) return;
      await showResult(answer, waited
        ? `queued, ready after ${fmtDuration(answer.receivedAt - since)}`
        : 'from a queued query');
      return;
    } else if (resp.status === 503 || resp.status === 429) {
      // Busy, or this client polled faster than its budget: wait as told.
      failures += 1;
      const info = await readJson(resp);
      if (failures > MAX_POLL_FAILURES) {
        stopElapsed();
        setStatus('error', `The service is unavailable (${errorText(resp, info)}). Reload this page to look again.`);
        return;
      }
      $('status-text').textContent = `The service is busy; retrying (${failures}/${MAX_POLL_FAILURES})…`;
      await sleep(retryAfter(resp, 5) * 1000);
    } else {
      const info = await readJson(resp);
      if (my !== flow) return;
      stopElapsed(resp.status === 422);
      if (resp.status === 422) {
        const why = info && typeof info.error === 'string' ? info.error : 'no reason given';
        setStatus('failed', `The query failed: ${why}`);
      } else if (resp.status === 410) {
        showLink(null);
        setStatus('error', 'This result has expired. Submit the query again.');
      } else if (resp.status === 404) {
        showLink(null);
        setStatus('error', 'There is no result with this id: the link may be wrong or the result forgotten.');
      } else {
        setStatus('error', `Could not get the result: ${errorText(resp, info)}.`);
      }
      return;
    }
  }
}

// Shows (following it while queued) the result the page's URL names, if
// any.
export function resume() {
  const id = resultFromUrl();
  if (!id) return;
  const my = ++flow;
  if (inFlight) inFlight.abort();
  inFlight = new AbortController();
  hideResult();
  state.shownQuery = queryFromUrl();
  if (state.shownQuery) {
    clearErrors();
    fillForm(state.shownQuery);
  }
  if (!UUID_RE.test(id)) {
    setStatus('error', `The link names result "${id}", which is not a result id.`);
    return;
  }
  setStatus('queued', 'Looking up the result…');
  queryOfResult(id, inFlight.signal)
    .then((query) => {
      if (my !== flow || !query) return;
      // The server's word on what the result answers, whatever the link
      // says (a link may be bare, cut short or edited).
      state.shownQuery = query;
      clearErrors();
      fillForm(query);
      window.history.replaceState(window.history.state, '', resultUrl(id, query));
    })
    .then(() => (my === flow ? poll(id, my, null) : undefined))
    .catch((e) => {
      if (my === flow && e.name !== 'AbortError') setStatus('error', `Could not get the result: ${e.message}.`);
    });
}

// Back or forward through the page's history: shows the result the URL
// now names, or none (a flow still running stops at its next step).
export function followHistory() {
  // Before the options are in, the form cannot show a query: start()
  // shows what the address names once they are.
  if (!optionsLoaded()) return;
  if (resultFromUrl()) resume();
  else {
    flow += 1;
    // The flow's request (an answer downloading, a poll) ends now.
    if (inFlight) inFlight.abort();
    inFlight = null;
    hideResult();
    showLink(null);
    setStatus('idle', 'No query yet: fill in the form and submit.');
  }
}
