// airq web page: small helpers with no state of their own: the element
// lookup, dates and times, and how numbers, durations and sizes read.

export const $ = (id) => document.getElementById(id);

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A module Worker running the script at `url` (a page link, pinned to its
// version), or null where none can be started.
export function moduleWorker(url) {
  if (!url || typeof Worker !== 'function') return null;
  try {
    return new Worker(url, { type: 'module' });
  } catch (e) {
    return null;
  }
}

// The next task: the page renders and takes input in between. A message
// to itself, not a timer: a hidden tab's timers are slowed to one a
// second or less, and an answer may be read in a tab in the background.
export function nextTask() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

export const fmtInt = (n) => Math.round(n).toLocaleString('en');
export const fmtCompact = (n) => (n < 1000 ? fmtInt(n)
  : new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 }).format(n));

// ---------------------------------------------------------------- dates

// An input's value ("YYYY-MM-DDTHH:MM[:SS[.sss]]") or the API's form
// ("YYYY-MM-DD HH:MM:SS") as {text: API form, seconds}, or null.
export function parseDateTime(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$/.exec(value.trim());
  if (!m) return null;
  const [, y, mo, d, h, mi, s = '00'] = m;
  const t = new Date(0);
  t.setUTCFullYear(+y, +mo - 1, +d);
  t.setUTCHours(+h, +mi, +s, 0);
  if (t.getUTCFullYear() !== +y || t.getUTCMonth() !== +mo - 1 || t.getUTCDate() !== +d
    || +h > 23 || +mi > 59 || +s > 59) return null;
  return { text: `${y}-${mo}-${d} ${h}:${mi}:${s}`, seconds: t.getTime() / 1000 };
}

// "YYYY-MM-DD HH:MM:SS" (UTC, the answers' form) as Unix seconds.
export function apiSeconds(text) {
  const m = /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)$/.exec(text || '');
  if (!m) return null;
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1000;
}

export function humanSpan(seconds) {
  const days = Math.floor(seconds / 86400);
  const rem = seconds % 86400;
  const hms = `${Math.floor(rem / 3600)}h ${Math.floor(rem % 3600 / 60)}m ${rem % 60}s`;
  if (days === 0) return hms;
  return rem === 0 ? `${days} days` : `${days} days ${hms}`;
}

// A short time, to a tenth of a second: "0.3 s", "12 s".
export function fmtQuick(ms) {
  return ms < 10000 ? `${(Math.max(0, ms) / 1000).toFixed(1)} s` : fmtDuration(ms);
}

export function fmtDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

export function fmtBytes(n) {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
