/* Kiosk content library: upload and delete files, edit playlists, add schedules, set default playlists and groups,
   publish. Every change is a fetch to /api/v1/kiosk (which checks the role again); refusals are shown in words.
   After a change the page reloads so the server draws the new state. Plain ES2020, no build step. */
(function () {
  'use strict';
  var V = window.Varta;
  var data = V.readJson('page-data') || {};
  var texts = data.texts || {};
  var API = '/api/v1/kiosk';
  var FLASH = 'varta-kiosk-flash';

  function tx(key, params) {
    var s = Object.prototype.hasOwnProperty.call(texts, key) ? texts[key] : key;
    Object.keys(params || {}).forEach(function (k) { s = s.split('%(' + k + ')s').join(String(params[k])); });
    return s;
  }
  function has(key) { return Object.prototype.hasOwnProperty.call(texts, key); }
  function $(id) { return document.getElementById(id); }

  function show(id, text, ok) {
    var el = $(id);
    if (!el) return;
    el.hidden = false;
    el.className = 'notice ' + (ok ? 'notice--ok' : 'notice--error');
    el.textContent = text;
  }

  /** Reload, showing *text* at the top of the page once it is back. */
  function reloadWith(text) {
    try { window.sessionStorage.setItem(FLASH, text); } catch (e) { /* private mode: no message */ }
    window.location.reload();
  }
  try {
    var flashed = window.sessionStorage.getItem(FLASH);
    if (flashed) { window.sessionStorage.removeItem(FLASH); show('content-result', flashed, true); }
  } catch (e) { /* no storage */ }

  /** The API's refusal in words: the reason's translation, then the API's own sentence. */
  function reasonText(detail, status, prefix) {
    if (detail && typeof detail === 'object' && !Array.isArray(detail) && detail.reason) {
      var key = (prefix || 'api_') + detail.reason;
      var alt = 'api_' + detail.reason;
      var words = has(key) ? tx(key) : has(alt) ? tx(alt) : detail.reason;
      return detail.message ? words + ' (' + detail.message + ')' : words;
    }
    if (Array.isArray(detail)) {
      return detail.map(function (d) { return (d.loc || []).slice(1).join('.') + ': ' + d.msg; }).join('; ');
    }
    return typeof detail === 'string' ? detail : 'HTTP ' + status;
  }

  function call(method, path, body, prefix) {
    var options = { method: method, credentials: 'same-origin', cache: 'no-store' };
    if (body instanceof FormData) {
      options.body = body;
    } else if (body !== undefined) {
      options.headers = { 'content-type': 'application/json' };
      options.body = JSON.stringify(body);
    }
    return fetch(API + path, options).then(function (r) {
      if (r.status === 204) return { status: 204, json: {} };
      return r.json().catch(function () { return {}; }).then(function (json) {
        if (!r.ok) throw new Error(reasonText(json.detail, r.status, prefix));
        return { status: r.status, json: json };
      });
    });
  }

  function busy(button, on) { if (button) button.disabled = on; }

  // ------------------------------------------------------------------ files
  var upload = $('upload-form');
  if (upload) {
    upload.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var file = upload.elements.file.files[0];
      if (!file) return;
      var form = new FormData();
      var name = upload.elements.name.value.trim();
      if (name) form.append('name', name);
      form.append('file', file, file.name);
      var button = upload.querySelector('button[type=submit]');
      busy(button, true);
      show('upload-result', tx('uploading', { name: name || file.name }), true);
      call('POST', '/assets', form, 'upload_')
        .then(function (res) { reloadWith(tx(res.json.already_stored ? 'already' : 'uploaded', { name: res.json.name })); })
        .catch(function (err) { busy(button, false); show('upload-result', tx('refused', { reason: err.message }), false); });
    });
  }

  function deleter(attr, path, resultId) {
    document.querySelectorAll('[' + attr + ']').forEach(function (btn) {
      btn.addEventListener('click', function () {
        if (!window.confirm(tx('confirm_delete', { name: btn.getAttribute('data-name') || '' }))) return;
        busy(btn, true);
        call('DELETE', path(btn.getAttribute(attr)))
          .then(function () { reloadWith(tx('deleted')); })
          .catch(function (err) { busy(btn, false); show(resultId, tx('failed', { reason: err.message }), false); });
      });
    });
  }
  deleter('data-delete-asset', function (sha) { return '/assets/' + sha; }, 'upload-result');
  deleter('data-delete-playlist', function (id) { return '/playlists/' + encodeURIComponent(id); }, 'playlist-result');
  deleter('data-delete-schedule', function (id) { return '/schedules/' + encodeURIComponent(id); }, 'schedule-result');

  // ------------------------------------------------------------------ playlist editor
  var plForm = $('playlist-form');
  var rows = $('playlist-rows');
  var rowTemplate = $('row-template');
  var assetKind = {};
  (data.assets || []).forEach(function (a) { assetKind[a.sha256] = a.kind; });

  function number() {
    rows.querySelectorAll('.plrow').forEach(function (row, i) { row.querySelector('.plrow__n').textContent = String(i + 1); });
  }

  function sourceChanged(row) {
    var source = row.querySelector('[name=source]').value;
    var url = row.querySelector('[name=url]');
    url.hidden = source !== 'url';
    url.required = source === 'url';
    // Videos may play to their end; everything else needs seconds.
    row.querySelector('[name=duration]').required = source !== '' && assetKind[source] !== 'video';
  }

  function addRow(item) {
    var row = rowTemplate.content.firstElementChild.cloneNode(true);
    var select = row.querySelector('[name=source]');
    if (item) {
      if (item.url) {
        select.value = 'url';
        row.querySelector('[name=url]').value = item.url;
      } else if (item.asset) {
        select.value = item.asset;
      }
      if (item.duration_s) row.querySelector('[name=duration]').value = String(item.duration_s);
      if (item.title) row.querySelector('[name=title]').value = item.title;
    }
    select.addEventListener('change', function () { sourceChanged(row); });
    sourceChanged(row);
    rows.appendChild(row);
    number();
    return row;
  }

  function startPlaylist(playlist) {
    rows.textContent = '';
    plForm.elements.id.value = playlist ? playlist.id : '';
    plForm.elements.id.readOnly = Boolean(playlist);
    plForm.elements.name.value = playlist ? playlist.name : '';
    var title = $('playlist-editor-title');
    title.textContent = title.getAttribute(playlist ? 'data-edit' : 'data-new') + (playlist ? ': ' + playlist.name : '');
    (playlist ? playlist.items : [null]).forEach(addRow);
    $('playlist-result').hidden = true;
  }

  if (plForm) {
    rows.addEventListener('click', function (ev) {
      var btn = ev.target.closest('button');
      if (!btn) return;
      var row = btn.closest('.plrow');
      if (btn.hasAttribute('data-remove')) {
        row.remove();
      } else if (btn.getAttribute('data-move') === '-1' && row.previousElementSibling) {
        rows.insertBefore(row, row.previousElementSibling);
      } else if (btn.getAttribute('data-move') === '1' && row.nextElementSibling) {
        rows.insertBefore(row.nextElementSibling, row);
      }
      number();
    });
    $('add-row').addEventListener('click', function () { addRow(null).querySelector('select').focus(); });
    $('new-playlist').addEventListener('click', function () { startPlaylist(null); plForm.elements.id.focus(); });
    document.querySelectorAll('[data-edit-playlist]').forEach(function (btn) {
      btn.addEventListener('click', function () {
        var playlist = (data.playlists || {})[btn.getAttribute('data-edit-playlist')];
        if (!playlist) return;
        startPlaylist(playlist);
        plForm.scrollIntoView({ behavior: 'smooth', block: 'start' });
        plForm.elements.name.focus();
      });
    });
    plForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var items = [];
      rows.querySelectorAll('.plrow').forEach(function (row) {
        var source = row.querySelector('[name=source]').value;
        var item = source === 'url' ? { url: row.querySelector('[name=url]').value.trim() } : { asset: source };
        var seconds = row.querySelector('[name=duration]').value;
        var title = row.querySelector('[name=title]').value.trim();
        if (seconds) item.duration_s = Number(seconds);
        if (title) item.title = title;
        items.push(item);
      });
      if (!items.length) { show('playlist-result', tx('no_items'), false); return; }
      var id = plForm.elements.id.value.trim();
      var button = plForm.querySelector('button[type=submit]');
      busy(button, true);
      call('PUT', '/playlists/' + encodeURIComponent(id), { name: plForm.elements.name.value.trim(), items: items })
        .then(function () { reloadWith(tx('saved')); })
        .catch(function (err) { busy(button, false); show('playlist-result', tx('failed', { reason: err.message }), false); });
    });
    startPlaylist(null);
  }

  // ------------------------------------------------------------------ schedules
  var scForm = $('schedule-form');
  if (scForm) {
    var target = scForm.elements.target;
    var showTarget = function () {
      scForm.querySelectorAll('[data-target-field]').forEach(function (el) {
        el.hidden = el.getAttribute('data-target-field') !== target.value;
      });
    };
    target.addEventListener('change', showTarget);
    showTarget();
    var windows = $('windows');
    $('add-window').addEventListener('click', function () {
      var w = $('window-template').content.firstElementChild.cloneNode(true);
      windows.appendChild(w);
      w.querySelector('input').focus();
    });
    windows.addEventListener('click', function (ev) {
      var btn = ev.target.closest('[data-remove]');
      if (btn) btn.closest('.window').remove();
    });
    scForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var f = scForm.elements;
      var body = {
        playlist_id: f.playlist_id.value,
        target: f.target.value,
        priority: Number(f.priority.value || 0),
        weekdays: Array.prototype.filter.call(scForm.querySelectorAll('[name=weekday]'), function (c) { return c.checked; })
          .map(function (c) { return Number(c.value); }),
        windows: Array.prototype.map.call(windows.querySelectorAll('.window'), function (w) {
          return { start: w.querySelector('[name=start]').value, end: w.querySelector('[name=end]').value };
        })
      };
      if (body.target === 'group') body.group = f.group.value;
      if (body.target === 'kiosk') body.node_id = f.node_id.value;
      if (f.start_date.value) body.start_date = f.start_date.value;
      if (f.end_date.value) body.end_date = f.end_date.value;
      var button = scForm.querySelector('button[type=submit]');
      busy(button, true);
      call('POST', '/schedules', body)
        .then(function () { reloadWith(tx('saved')); })
        .catch(function (err) { busy(button, false); show('schedule-result', tx('failed', { reason: err.message }), false); });
    });
  }

  // ------------------------------------------------------------------ default playlists, groups
  document.querySelectorAll('form[data-default-playlist]').forEach(function (form) {
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var nodeId = form.getAttribute('data-default-playlist');
      var button = form.querySelector('button');
      busy(button, true);
      call('PUT', '/kiosks/' + encodeURIComponent(nodeId) + '/default-playlist', { playlist_id: form.elements.playlist_id.value || null })
        .then(function () { reloadWith(tx('saved')); })
        .catch(function (err) { busy(button, false); show('content-result', tx('failed', { reason: err.message }), false); });
    });
  });

  document.querySelectorAll('form[data-group]').forEach(function (form) {
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var name = form.getAttribute('data-group') || form.elements.group.value.trim();
      if (!name) { form.elements.group.focus(); return; }
      var members = Array.prototype.filter.call(form.querySelectorAll('[name=node_id]'), function (c) { return c.checked; })
        .map(function (c) { return c.value; });
      var button = form.querySelector('button[type=submit]');
      busy(button, true);
      call('PUT', '/groups/' + encodeURIComponent(name), { node_ids: members })
        .then(function () { reloadWith(tx('saved')); })
        .catch(function (err) { busy(button, false); show('group-result', tx('failed', { reason: err.message }), false); });
    });
  });

  // ------------------------------------------------------------------ publish
  var publish = $('publish-btn');
  if (publish) {
    publish.addEventListener('click', function () {
      busy(publish, true);
      show('content-result', tx('publishing'), true);
      call('POST', '/publish')
        .then(function (res) {
          var report = res.json;
          var body = document.querySelector('#publish-results tbody');
          body.textContent = '';
          (report.results || []).forEach(function (r) {
            var tr = document.createElement('tr');
            tr.className = 'publish--' + r.status;
            tr.setAttribute('data-node-id', r.node_id);
            var name = (data.kiosks || {})[r.node_id];
            [name ? name + ' (' + r.node_id + ')' : r.node_id, has('publish_' + r.status) ? tx('publish_' + r.status) : r.status,
              r.version === null || r.version === undefined ? '—' : 'v' + r.version, r.status === 'failed' ? r.detail || '' : '']
              .forEach(function (text) { var td = document.createElement('td'); td.textContent = text; tr.appendChild(td); });
            body.appendChild(tr);
          });
          $('publish-results').hidden = false;
          var ok = !report.failed;
          show('content-result', (report.results || []).length ? tx('publish_done', report) : tx('no_kiosks'), ok);
        })
        .catch(function (err) { show('content-result', tx('failed', { reason: err.message }), false); })
        .then(function () { busy(publish, false); });
    });
  }
})();
