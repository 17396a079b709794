/* Varta dashboard: the official alert banner (_alert_banner.html), kept current from the live stream.
   Informational only. On every `alert` event (a period opened or closed, a feed went stale or came back), when the
   stream (re)connects, and once a minute, it reloads /api/v1/alerts/active and /api/v1/alerts/sources and redraws
   one red strip per site under alert and one grey note per stale feed. Plain ES2020, no build step. */
(function () {
  'use strict';

  var V = window.Varta;
  var root = document.getElementById('alert-banner');
  if (!root || !V) return;

  var T = V.readJson('alert-banner-i18n') || {};
  var TYPES = T.types || {};
  var alertsBox = root.querySelector('.alert-banner__alerts');
  var staleBox = root.querySelector('.alert-banner__stale');
  var REFRESH_MS = 60000;

  function fill(template, params) {
    var s = String(template || '');
    Object.keys(params).forEach(function (k) { s = s.split('%(' + k + ')s').join(String(params[k])); });
    return s;
  }

  /** "14:05" today, "12.03 14:05" on another day, in the viewer's time zone. */
  function since(iso) {
    var d = new Date(iso);
    if (!iso || isNaN(d.getTime())) return '—';
    var pad = function (n) { return (n < 10 ? '0' : '') + n; };
    var hm = pad(d.getHours()) + ':' + pad(d.getMinutes());
    var today = new Date(V.now());
    if (d.toDateString() === today.toDateString()) return hm;
    return pad(d.getDate()) + '.' + pad(d.getMonth() + 1) + ' ' + hm;
  }

  /** The alert a site's strip shows: its air-raid alert if any, else its oldest. */
  function shown(alerts) {
    return alerts.slice().sort(function (a, b) {
      var ra = a.alert_type === 'air_raid' ? 0 : 1;
      var rb = b.alert_type === 'air_raid' ? 0 : 1;
      if (ra !== rb) return ra - rb;
      return Date.parse(a.started_at) - Date.parse(b.started_at);
    })[0];
  }

  function strip(cls, text, attrs) {
    var p = document.createElement('p');
    p.className = cls;
    p.textContent = text;
    Object.keys(attrs).forEach(function (k) { p.setAttribute(k, attrs[k]); });
    return p;
  }

  /** Replace *box*'s strips with *strips* only when their text changed (screen readers announce changes). */
  function replace(box, strips) {
    var next = strips.map(function (p) { return p.textContent; }).join('\n');
    var now = Array.prototype.map.call(box.children, function (p) { return p.textContent; }).join('\n');
    if (next !== now) box.replaceChildren.apply(box, strips);
  }

  function render(sites, sources) {
    var under = sites.filter(function (s) { return s.alerts && s.alerts.length; }).map(function (s) {
      return { site: s, alert: shown(s.alerts) };
    }).sort(function (a, b) { return Date.parse(a.alert.started_at) - Date.parse(b.alert.started_at); });
    replace(alertsBox, under.map(function (u) {
      var text = fill(T.line, {
        type: TYPES[u.alert.alert_type] || TYPES.other || u.alert.alert_type,
        site: u.site.name || u.site.site,
        region: u.alert.region_name || u.alert.region_uid,
        time: since(u.alert.started_at)
      });
      return strip('banner banner--lost banner--alert', text, {
        'data-site': u.site.site, 'data-alert-type': u.alert.alert_type
      });
    }));
    var stale = ((sources && sources.sources) || []).filter(function (s) { return s.stale; });
    replace(staleBox, stale.map(function (s) {
      var text = s.last_ok_at ? fill(T.stale, { source: s.name, time: since(s.last_ok_at) })
        : fill(T.stale_never, { source: s.name });
      return strip('banner banner--stale', text, { 'data-source': s.name });
    }));
    root.hidden = under.length === 0 && stale.length === 0;
  }

  var timer = null;
  function refresh() {
    if (timer) return;
    timer = window.setTimeout(function () {
      timer = null;
      Promise.all([V.fetchJson('/api/v1/alerts/active'), V.fetchJson('/api/v1/alerts/sources')])
        .then(function (r) { render(r[0], r[1]); })
        .catch(function () { /* keep what is shown; the next event or the minute timer tries again */ });
    }, 250);
  }

  // A stream of its own (only `alert` events), so the banner stays current on every page, with or without a
  // page script of its own. The browser reconnects by itself; a stream closed for good is reopened with back-off.
  var source = null;
  var delay = 2000;
  function connect() {
    source = new EventSource('/api/v1/stream');
    source.addEventListener('alert', refresh);
    source.onopen = function () { delay = 2000; refresh(); };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        window.setTimeout(connect, delay);
        delay = Math.min(delay * 2, 60000);
      }
    };
  }
  window.addEventListener('pagehide', function () { if (source) source.close(); });
  window.setInterval(refresh, REFRESH_MS);
  connect();
})();
