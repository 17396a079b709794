/* Varta dashboard: shared helpers (translations, times, live stream). Plain ES2020, no build step. */
(function () {
  'use strict';

  function readJson(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  var I18N = readJson('i18n-data') || {};
  var LANG = document.documentElement.lang || 'uk';

  // Server clock minus browser clock: ages stay right on a wall screen whose clock is off.
  var serverNow = Date.parse(document.body.getAttribute('data-server-now') || '');
  var skewMs = isNaN(serverNow) ? 0 : serverNow - Date.now();
  function now() { return Date.now() + skewMs; }

  /** Translated string *key* with %(name)s placeholders filled from *params*. */
  function t(key, params) {
    var s = Object.prototype.hasOwnProperty.call(I18N, key) ? I18N[key] : key;
    if (params) {
      Object.keys(params).forEach(function (k) { s = s.split('%(' + k + ')s').join(String(params[k])); });
    }
    return s;
  }

  /** "2 min ago" for an ISO time (same steps as the server's Jinja filter). */
  function ago(iso) {
    if (!iso) return t('never');
    var then = Date.parse(iso);
    if (isNaN(then)) return t('never');
    var secs = Math.max(0, Math.floor((now() - then) / 1000));
    if (secs < 45) return t('just_now');
    var m = Math.max(1, Math.floor(secs / 60));
    if (m < 60) return t('min_ago', { m: m });
    var h = Math.floor(m / 60); m = m % 60;
    if (h < 48) return t('h_ago', { h: h, m: m });
    return t('d_ago', { d: Math.floor(h / 24), h: h % 24 });
  }

  /** Local date and time of an ISO string, in the page language. */
  function localTime(iso) {
    var d = new Date(iso);
    if (!iso || isNaN(d.getTime())) return '—';
    return d.toLocaleString(LANG, {
      year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
      hourCycle: 'h23'
    });
  }

  /** Point a <time data-ago> element at *iso* and render its age. */
  function setAgo(el, iso) {
    if (!el) return;
    el.setAttribute('datetime', iso || '');
    el.title = iso ? localTime(iso) : '';
    el.textContent = ago(iso);
  }

  function refreshTimes(root) {
    (root || document).querySelectorAll('time[data-ago]').forEach(function (el) {
      setAgo(el, el.getAttribute('datetime'));
    });
    (root || document).querySelectorAll('time[data-local]').forEach(function (el) {
      var iso = el.getAttribute('datetime');
      if (iso) el.textContent = localTime(iso);
    });
  }

  function announce(text) {
    var el = document.getElementById('announcer');
    if (el) { el.textContent = ''; window.setTimeout(function () { el.textContent = text; }, 50); }
  }

  function setLiveState(state) {
    var box = document.getElementById('live');
    var banner = document.getElementById('live-banner');
    document.body.setAttribute('data-live', state);
    if (box) {
      box.className = 'live live--' + state;
      box.querySelector('.live__text').textContent =
        state === 'ok' ? t('live') : state === 'lost' ? t('reconnecting') : t('connecting');
    }
    if (banner) banner.hidden = state !== 'lost';
  }

  /**
   * Subscribe to the live stream (GET /api/v1/stream). *handlers* maps SSE event names to functions taking
   * the parsed JSON. *onResync* runs after a lost stream came back, to fetch what was missed.
   * The browser retries on network errors by itself; when the stream is closed for good (e.g. HTTP 401 after
   * the session expired) we check the session and either go to the login page or retry with back-off.
   */
  function connectLive(handlers, onResync) {
    var source = null;
    var lost = false;
    var delay = 1000;

    function open() {
      setLiveState(lost ? 'lost' : 'connecting');
      source = new EventSource('/api/v1/stream');
      source.onopen = function () {
        delay = 1000;
        setLiveState('ok');
        if (lost) {
          lost = false;
          if (onResync) onResync();
        }
      };
      source.onerror = function () {
        lost = true;
        setLiveState('lost');
        if (source.readyState === EventSource.CLOSED) {
          source.close();
          retryLater();
        }
      };
      Object.keys(handlers).forEach(function (name) {
        source.addEventListener(name, function (ev) {
          var data;
          try { data = JSON.parse(ev.data); } catch (e) { return; }
          handlers[name](data);
        });
      });
    }

    function retryLater() {
      fetch('/api/v1/auth/me', { credentials: 'same-origin', cache: 'no-store' })
        .then(function (r) {
          if (r.status === 401) {
            window.location.assign('/login?next=' + encodeURIComponent(window.location.pathname));
            return;
          }
          window.setTimeout(open, delay);
          delay = Math.min(delay * 2, 30000);
        })
        .catch(function () {
          window.setTimeout(open, delay);
          delay = Math.min(delay * 2, 30000);
        });
    }

    window.addEventListener('pagehide', function () { if (source) source.close(); });
    open();
  }

  function fetchJson(url) {
    return fetch(url, { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
      return r.json();
    });
  }

  // Forms that need a confirmation carry data-confirm (no inline handlers: the CSP forbids them).
  document.addEventListener('submit', function (ev) {
    var msg = ev.target.getAttribute && ev.target.getAttribute('data-confirm');
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });

  refreshTimes(document);
  window.setInterval(function () { refreshTimes(document); }, 15000);

  window.Varta = {
    t: t, ago: ago, localTime: localTime, setAgo: setAgo, refreshTimes: refreshTimes, readJson: readJson,
    connectLive: connectLive, fetchJson: fetchJson, announce: announce, now: now
  };
})();
