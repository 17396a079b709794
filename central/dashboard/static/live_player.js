/* Live video over WHEP (RFC 9725): offer → POST /api/v1/cameras/<node>/<camera>/whep → answer; the picture the
 * box already shows stays until the first video frame arrives. Reconnects on network changes, explains every end.
 * Plain ES2020, no build step. Exposes Varta.LivePlayer and Varta.liveEnded (for the page's SSE handler). */
(function () {
  'use strict';
  var V = window.Varta;
  var players = {};       // session id → player (for the SSE "live_ended" notice)
  var configPromise = null;

  function liveConfig() {
    if (!configPromise) {
      configPromise = V.fetchJson('/api/v1/live/config').catch(function () {
        configPromise = null;
        return { ice_servers: [] };
      });
    }
    return configPromise;
  }

  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  /** Resolve when ICE gathering is complete (no trickle ICE), or after *ms* with what has been gathered. */
  function gathered(pc, ms) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise(function (resolve) {
      var timer = window.setTimeout(done, ms);
      function done() {
        window.clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      }
      function check() { if (pc.iceGatheringState === 'complete') done(); }
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  function endText(reason, detail) {
    var key = 'live_end_' + (reason || 'unknown');
    var text = V.t(key);
    if (text === key) text = V.t('live_end_unknown');
    return detail ? text + ' (' + detail + ')' : text;
  }

  /**
   * A live view in *box* (an element holding the camera's latest picture). Options: nodeId, deviceId,
   * stream ('main' | 'sub'), autoRetry (seconds before trying again after the video ended; 0 = wait for a click).
   */
  function LivePlayer(box, options) {
    this.box = box;
    this.nodeId = options.nodeId;
    this.deviceId = options.deviceId;
    this.stream = options.stream || 'main';
    this.autoRetry = options.autoRetry === undefined ? 15 : options.autoRetry;
    this.pc = null;
    this.location = null;
    this.sessionId = null;
    this.state = 'idle';
    this.wanted = false;
    this.stoppedByUser = false;
    this.retryTimer = null;
    this.startedAt = 0;
    this.postedAt = 0;
    this.firstFrameMs = null;
    this.video = el('video', 'live__video');
    this.video.muted = true;
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.setAttribute('playsinline', '');
    this.video.hidden = true;
    this.overlay = el('div', 'live__overlay');
    this.message = el('span', 'live__msg');
    this.message.setAttribute('role', 'status');
    this.button = el('button', 'btn live__btn', V.t('live_watch'));
    this.button.type = 'button';
    this.badge = el('span', 'live__badge', V.t('live'));
    this.badge.setAttribute('aria-hidden', 'true');
    this.overlay.appendChild(this.message);
    this.overlay.appendChild(this.button);
    box.classList.add('liveview');
    box.appendChild(this.video);
    box.appendChild(this.overlay);
    box.appendChild(this.badge);
    var self = this;
    this.button.addEventListener('click', function (ev) {
      ev.preventDefault();
      ev.stopPropagation();
      if (self.state === 'playing' || self.state === 'connecting') {
        self.stop();
        self.stoppedByUser = true;
      } else {
        self.start();
      }
    });
    this.video.addEventListener('playing', function () { self._firstFrame(); });
    if (this.video.requestVideoFrameCallback) {
      var onFrame = function () { self._firstFrame(); };
      this.video.addEventListener('loadedmetadata', function () { self.video.requestVideoFrameCallback(onFrame); });
    }
    this._show('idle', '');
  }

  LivePlayer.prototype._show = function (state, text) {
    this.state = state;
    this.box.setAttribute('data-live', state);
    this.message.textContent = text || '';
    this.button.textContent = state === 'playing' || state === 'connecting' ? V.t('live_stop') : V.t('live_watch');
    this.video.hidden = state !== 'playing';
  };

  LivePlayer.prototype._firstFrame = function () {
    if (this.state !== 'connecting' || !this.video.videoWidth) return;
    var now = performance.now();
    this.firstFrameMs = Math.round(now - this.startedAt);
    this._show('playing', '');
    // For dashboards and benchmarks: click → first frame, and offer posted → first frame.
    this.box.setAttribute('data-first-frame-ms', String(this.firstFrameMs));
    this.box.setAttribute('data-offer-to-frame-ms', String(Math.round(now - this.postedAt)));
  };

  /** Start (or restart) the live view. */
  LivePlayer.prototype.start = function () {
    var self = this;
    this.wanted = true;
    this.stoppedByUser = false;
    window.clearTimeout(this.retryTimer);
    this._teardown(true);
    this.startedAt = performance.now();
    this.firstFrameMs = null;
    this._show('connecting', V.t('live_connecting'));
    var url = '/api/v1/cameras/' + encodeURIComponent(this.nodeId) + '/' + encodeURIComponent(this.deviceId) +
      '/whep?stream=' + encodeURIComponent(this.stream);
    return liveConfig().then(function (config) {
      if (!self.wanted) return null;
      var pc = new RTCPeerConnection({ iceServers: config.ice_servers || [] });
      self.pc = pc;
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.ontrack = function (ev) {
        if (pc !== self.pc) return;
        self.video.srcObject = ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]);
        var playing = self.video.play();
        if (playing && playing.catch) playing.catch(function () { /* autoplay of muted video is allowed */ });
      };
      pc.onconnectionstatechange = function () { self._connectionChanged(pc); };
      return pc.createOffer()
        .then(function (offer) { return pc.setLocalDescription(offer); })
        .then(function () { return gathered(pc, (config.ice_servers || []).length ? 2000 : 1000); })
        .then(function () {
          if (pc !== self.pc) return null;
          self.postedAt = performance.now();
          return fetch(url, {
            method: 'POST',
            credentials: 'same-origin',
            headers: { 'content-type': 'application/sdp' },
            body: pc.localDescription.sdp
          });
        })
        .then(function (r) {
          if (!r || pc !== self.pc) return null;
          if (r.status !== 201) {
            return r.json().catch(function () { return {}; }).then(function (json) {
              var detail = typeof json.detail === 'string' ? json.detail : 'HTTP ' + r.status;
              var err = new Error(detail);
              err.status = r.status;
              err.retryAfter = Number(r.headers.get('retry-after')) || 0;
              throw err;
            });
          }
          self.box.setAttribute('data-answer-ms', String(Math.round(performance.now() - self.postedAt)));
          self.location = r.headers.get('location');
          self.sessionId = self.location ? self.location.split('/').pop() : null;
          if (self.sessionId) players[self.sessionId] = self;
          return r.text().then(function (sdp) { return pc.setRemoteDescription({ type: 'answer', sdp: sdp }); });
        });
    }).catch(function (err) {
      if (!self.wanted) return;
      var status = err && err.status;
      var text = status === 403 ? V.t('live_forbidden') : V.t('live_failed', { reason: err.message || err });
      self._teardown(false);
      self._show('error', text);
      if (status !== 403 && status !== 404 && status !== 406 && status !== 501) {
        self._retryLater(err.retryAfter || null);
      }
    });
  };

  LivePlayer.prototype._connectionChanged = function (pc) {
    if (pc !== this.pc || !this.wanted) return;
    var s = pc.connectionState;
    if (s === 'failed' || s === 'closed') {
      this._teardown(false);
      this._show('error', V.t('live_connection_lost'));
      this._retryLater(2);
    } else if (s === 'disconnected') {
      var self = this;
      // A short loss (e.g. Wi-Fi roaming) often recovers by itself; if not, start over.
      window.setTimeout(function () {
        if (pc === self.pc && pc.connectionState === 'disconnected') {
          self._teardown(false);
          self._show('error', V.t('live_connection_lost'));
          self._retryLater(1);
        }
      }, 4000);
    }
  };

  LivePlayer.prototype._retryLater = function (seconds) {
    var self = this;
    if (!this.wanted || !(seconds || this.autoRetry)) return;
    var delay = seconds || Math.min(30, this.autoRetry);
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(function () { if (self.wanted) self.start(); }, delay * 1000);
    this.message.textContent += ' ' + V.t('live_retry_in', { s: delay });
  };

  /** The node says the session ended (SSE "live_ended"): say why; try again later if it may come back. */
  LivePlayer.prototype.ended = function (notice) {
    this._teardown(false);
    this._show('ended', endText(notice.reason, notice.detail));
    V.announce(this.message.textContent);
    if (notice.reason !== 'viewer_left' && this.autoRetry) this._retryLater(this.autoRetry);
  };

  /** Stop watching (the session ends at the node at once). */
  LivePlayer.prototype.stop = function () {
    this.wanted = false;
    window.clearTimeout(this.retryTimer);
    this._teardown(true);
    this._show('idle', '');
  };

  LivePlayer.prototype._teardown = function (tellServer) {
    if (this.sessionId) delete players[this.sessionId];
    if (tellServer && this.location) {
      // keepalive: the DELETE still goes out while the page unloads.
      fetch(this.location, { method: 'DELETE', credentials: 'same-origin', keepalive: true }).catch(function () {});
    }
    this.location = null;
    this.sessionId = null;
    if (this.pc) {
      var pc = this.pc;
      this.pc = null;
      try { pc.close(); } catch (e) { /* already closed */ }
    }
    this.video.srcObject = null;
  };

  function liveEnded(notice) {
    var player = players[notice.session_id];
    if (player) player.ended(notice);
  }

  function stopAll() {
    Object.keys(players).forEach(function (id) { players[id].stop(); });
  }

  window.addEventListener('pagehide', stopAll);
  // A new network (Wi-Fi → 4G, cable back in): every running view starts over on the new path.
  function networkChanged() {
    Object.keys(players).forEach(function (id) {
      var p = players[id];
      if (p.wanted) p.start();
    });
  }
  window.addEventListener('online', networkChanged);
  if (navigator.connection && navigator.connection.addEventListener) {
    navigator.connection.addEventListener('change', networkChanged);
  }

  V.LivePlayer = LivePlayer;
  V.liveEnded = liveEnded;
})();
