// streamd page: lists the channels and plays the live ones, and lists the
// library (the public VOD items of GET /api/content) and plays the ready
// ones, in the same player.
//
// Every piece of server data (channel names, titles, genres and failure
// reasons, which are user data) reaches the DOM through textContent or a
// property, never through innerHTML, so nothing in it is ever parsed as
// markup.
(function () {
  'use strict';

  var POLL_MS = 3000;
  var LIBRARY_POLL_MS = 5000;
  var LIBRARY_LIMIT = 50;
  // A channel that just went live has no playlist until the packager has
  // cut its first segment; keep asking for a while before calling it an
  // error.
  var MANIFEST_RETRIES = 10;
  var MANIFEST_RETRY_MS = 2000;
  var HLS_TYPE = 'application/vnd.apple.mpegurl';

  var $ = function (id) { return document.getElementById(id); };
  var video = $('video');
  var errorEl = $('error');
  var statusEl = $('status');
  var listEl = $('channels');
  var emptyEl = $('empty');
  var apiErrorEl = $('apierror');
  var urlBox = $('urlbox');
  var urlInput = $('playurl');
  var copiedEl = $('copied');
  var qualityBox = $('qualitybox');
  var qualitySel = $('quality');
  var qualityNote = $('qualitynote');
  var libEl = $('library');
  var libEmptyEl = $('libraryempty');
  var libMoreEl = $('librarymore');
  var libErrorEl = $('libraryerror');

  // What is being played: {kind: 'live', name, url} for a channel,
  // {kind: 'vod', id, name (the title), url} for a library item.
  var current = null;
  var lastLibrary = '';     // the library as last rendered, to skip no-op redraws
  var hls = null;           // hls.js instance, when hls.js plays
  var autoStarted = false;  // the first live channel starts once, by itself
  var mediaRecovered = false;
  var manifestRetries = 0;
  var retryTimer = 0;
  var offlineStop = false;  // current stopped because its channel went offline
  var playingLevel = -1;    // index in hls.levels of the level on screen

  function setText(el, text) {
    el.textContent = text || '';
    el.hidden = !text;
  }
  function showError(msg) { setText(errorEl, msg); }
  function status(msg) { statusEl.textContent = msg; }

  function node(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function since(iso) {
    var d = new Date(iso);
    if (isNaN(d)) return '';
    var mins = Math.max(0, Math.round((Date.now() - d.getTime()) / 60000));
    var when = mins < 24 * 60
      ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleString();
    var ago = mins < 1 ? 'just now' : mins < 120 ? mins + ' min' : Math.round(mins / 60) + ' h';
    return 'since ' + when + ' (' + ago + ')';
  }

  function render(channels) {
    emptyEl.hidden = channels.length > 0;
    // Live first, then by name; the server sorts the same way, this keeps
    // the page right whatever it is given.
    channels = channels.slice().sort(function (a, b) {
      if (a.live !== b.live) return a.live ? -1 : 1;
      return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    });
    var items = channels.map(function (ch) {
      var li = node('li', ch.live ? 'live' : 'offline');
      li.dataset.name = ch.name;
      var b = node('button');
      b.type = 'button';
      b.disabled = !ch.live;
      b.appendChild(node('span', 'name', ch.name));
      if (ch.live) b.appendChild(node('span', 'badge', 'LIVE'));
      var meta = ch.live
        ? [(ch.codecs || []).join(', '), since(ch.since)].filter(Boolean).join(' · ')
        : 'offline';
      b.appendChild(node('span', 'meta', meta));
      if (ch.live) b.addEventListener('click', function () { play(liveSource(ch)); });
      li.appendChild(b);
      return li;
    });
    listEl.replaceChildren.apply(listEl, items);
    markCurrent();

    var live = channels.filter(function (c) { return c.live; });
    if (current && current.kind === 'live') {
      var now = channels.find(function (c) { return c.name === current.name; });
      if ((!now || !now.live) && !offlineStop) {
        stop();
        offlineStop = true;
        showError('');
        status('Channel “' + current.name + '” went offline.');
      } else if (now && now.live && offlineStop) {
        play(liveSource(now)); // it is back
      }
    } else if (!current && !autoStarted && live.length > 0) {
      autoStarted = true;
      play(liveSource(live[0]));
    }
  }

  function liveSource(ch) { return { kind: 'live', name: ch.name, url: ch.url }; }

  // markCurrent flags the entry being played, in whichever list it is.
  function markCurrent() {
    mark(listEl, 'name', current && current.kind === 'live' ? current.name : null);
    mark(libEl, 'id', current && current.kind === 'vod' ? current.id : null);
  }
  function mark(list, key, value) {
    Array.prototype.forEach.call(list.children, function (li) {
      if (value != null && li.dataset[key] === value) li.setAttribute('aria-current', 'true');
      else li.removeAttribute('aria-current');
    });
  }

  // Library. encoding_status is one of pending (no upload yet), uploaded,
  // queued, processing or running (with encoding_progress, a percent),
  // ready (with play.hls) and failed (with encoding_reason).
  function itemStatus(it) {
    switch (it.encoding_status) {
      case 'ready':
        return 'Ready';
      case 'processing':
      case 'running':
        var p = Number(it.encoding_progress);
        // Rounded down: "100 %" only once it is ready.
        return isFinite(p) ? 'Processing ' + Math.max(0, Math.min(99, Math.floor(p))) + ' %' : 'Processing';
      case 'uploaded':
      case 'queued':
        // While queued, a reason says why an attempt is being retried.
        return it.encoding_reason ? 'Queued (retrying: ' + it.encoding_reason + ')' : 'Queued';
      case 'pending':
      case '':
      case undefined:
        return 'Waiting for upload';
      case 'failed':
        return it.encoding_reason ? 'Failed: ' + it.encoding_reason : 'Failed';
    }
    return String(it.encoding_status);
  }

  function playable(it) {
    return it.encoding_status === 'ready' && it.play && typeof it.play.hls === 'string' && it.play.hls !== '';
  }

  function renderLibrary(items, more) {
    libEmptyEl.hidden = items.length > 0;
    libMoreEl.hidden = !more;
    var key = JSON.stringify(items);
    if (key === lastLibrary) return;
    lastLibrary = key;
    // Keep the keyboard focus on the entry it was on across the redraw.
    var focused = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest('#library li') : null;
    var focusedId = focused ? focused.dataset.id : null;
    var refocus = null;
    var lis = items.map(function (it) {
      var ready = playable(it);
      var st = it.encoding_status === 'failed' ? 'failed' : ready ? 'ready' : 'pending';
      var li = node('li', st);
      li.dataset.id = String(it.id);
      var b = node('button');
      b.type = 'button';
      b.disabled = !ready;
      b.appendChild(node('span', 'name', it.title || 'Untitled'));
      if (ready) b.appendChild(node('span', 'badge ready', 'Ready'));
      var meta = [it.genre, ready ? '' : itemStatus(it)].filter(Boolean).join(' · ');
      if (meta) b.appendChild(node('span', 'meta', meta));
      if (ready) {
        b.addEventListener('click', function () {
          play({ kind: 'vod', id: String(it.id), name: it.title || 'Untitled', url: it.play.hls });
        });
      }
      if (focusedId != null && li.dataset.id === focusedId && ready) refocus = b;
      li.appendChild(b);
      return li;
    });
    libEl.replaceChildren.apply(libEl, lis);
    markCurrent();
    if (refocus) refocus.focus();
  }

  function setLibraryError(msg) { setText(libErrorEl, msg); }

  function pollLibrary() {
    fetch('api/content?limit=' + LIBRARY_LIMIT, { cache: 'no-store', credentials: 'omit' })
      .then(function (res) {
        return res.json().catch(function () { return null; }).then(function (body) {
          if (res.ok && body && Array.isArray(body.items)) return body;
          if (res.status === 404) throw new Error('The library is not available on this server.');
          var msg = body && body.error && body.error.message;
          throw new Error('Cannot load the library: ' + (msg || 'HTTP ' + res.status));
        });
      })
      .then(function (body) {
        setLibraryError('');
        renderLibrary(body.items, !!body.next_after);
      })
      .catch(function (e) { setLibraryError(e.message); })
      .finally(function () { setTimeout(pollLibrary, LIBRARY_POLL_MS); });
  }

  function setApiError(msg) { setText(apiErrorEl, msg); }

  function poll() {
    fetch('api/channels', { cache: 'no-store' })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(function (list) {
        setApiError('');
        render(Array.isArray(list) ? list : []);
      })
      .catch(function (e) { setApiError('Cannot load the channel list: ' + e.message); })
      .finally(function () { setTimeout(poll, POLL_MS); });
  }

  function stop() {
    clearTimeout(retryTimer);
    hideQuality();
    qualityNote.hidden = true;
    if (hls) {
      hls.destroy();
      hls = null;
    }
    if (video.getAttribute('src')) {
      video.removeAttribute('src');
      video.load();
    }
  }

  function tryPlay() {
    var p = video.play();
    if (p && p.catch) {
      p.catch(function (e) {
        // Autoplay refused (muted autoplay normally is not): the controls
        // are there. AbortError just means a newer load replaced this one.
        if (e && e.name === 'NotAllowedError') status('Press play to start “' + current.name + '”.');
      });
    }
  }

  // play starts a source: a live channel or a ready library item.
  function play(src) {
    stop();
    current = src;
    autoStarted = true; // once something played, a channel going live does not take over
    offlineStop = false;
    mediaRecovered = false;
    manifestRetries = 0;
    showError('');
    status('Loading “' + src.name + '”…');
    urlInput.value = new URL(src.url, location.href).href;
    copiedEl.textContent = '';
    urlBox.hidden = false;
    markCurrent();
    load();
  }

  function load() {
    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls();
      hls.on(window.Hls.Events.ERROR, onHlsError);
      hls.on(window.Hls.Events.MANIFEST_PARSED, tryPlay);
      hls.on(window.Hls.Events.MANIFEST_PARSED, buildQuality);
      // hls.js drops levels that keep failing; the indices change then.
      hls.on(window.Hls.Events.LEVELS_UPDATED, function () {
        if (hls) playingLevel = hls.currentLevel;
        buildQuality();
      });
      hls.on(window.Hls.Events.LEVEL_SWITCHED, onLevelSwitched);
      hls.loadSource(current.url);
      hls.attachMedia(video);
    } else if (video.canPlayType(HLS_TYPE)) {
      // Safari (and iOS) play HLS natively. The element picks the
      // rendition itself and offers no way to choose one, so there is no
      // quality control, only a note saying so.
      qualityNote.hidden = false;
      video.src = current.url;
      tryPlay();
    } else {
      showError('This browser can play neither HLS nor Media Source Extensions.');
    }
  }

  // Quality control (hls.js only). The option values are indices into
  // hls.levels, which hls.js keeps sorted by bitrate, lowest first; the
  // list shows them highest first, after "Auto" (-1).
  function rate(bps) {
    return bps >= 1e6 ? (bps / 1e6).toFixed(1) + ' Mb/s' : Math.round(bps / 1e3) + ' kb/s';
  }
  function shortLabel(l, i) {
    return l.height ? l.height + 'p' : (l.name || 'Level ' + (i + 1));
  }
  function levelLabel(l, i) {
    var s = shortLabel(l, i);
    return l.bitrate ? s + ' · ' + rate(l.bitrate) : s;
  }

  // "Auto (480p)" while hls.js chooses, with the level on screen; plain
  // "Auto" while the viewer has chosen a level, or before the first one
  // plays.
  function autoText() {
    var l = hls && hls.autoLevelEnabled && hls.levels ? hls.levels[playingLevel] : null;
    return l ? 'Auto (' + shortLabel(l, playingLevel) + ')' : 'Auto';
  }
  function showPlayingLevel() {
    if (qualitySel.options.length) qualitySel.options[0].textContent = autoText();
  }

  function hideQuality() {
    qualityBox.hidden = true;
    qualitySel.replaceChildren();
    playingLevel = -1;
  }

  function buildQuality() {
    var levels = (hls && hls.levels) || [];
    if (levels.length < 2) {
      // Nothing to choose from.
      qualityBox.hidden = true;
      qualitySel.replaceChildren();
      return;
    }
    var order = levels.map(function (l, i) { return i; }).sort(function (a, b) {
      return (levels[b].height || 0) - (levels[a].height || 0) ||
        (levels[b].bitrate || 0) - (levels[a].bitrate || 0);
    });
    var auto = node('option', null, autoText());
    auto.value = '-1';
    var opts = [auto].concat(order.map(function (i) {
      var o = node('option', null, levelLabel(levels[i], i));
      o.value = String(i);
      return o;
    }));
    qualitySel.replaceChildren.apply(qualitySel, opts);
    var chosen = hls.autoLevelEnabled ? -1 : hls.manualLevel;
    qualitySel.value = chosen >= 0 && chosen < levels.length ? String(chosen) : '-1';
    qualityBox.hidden = false;
  }

  function onLevelSwitched(event, data) {
    playingLevel = data.level;
    showPlayingLevel();
  }

  qualitySel.addEventListener('change', function () {
    if (!hls) return;
    var level = parseInt(qualitySel.value, 10);
    // nextLevel, not currentLevel: currentLevel flushes the whole buffer,
    // so the picture stalls until a fragment of the new level arrives;
    // nextLevel keeps playing what is buffered up to the next fragment
    // boundary and switches there, a segment or two later (a few seconds
    // on a live stream, whose buffer is short anyway) without a stall.
    // -1 hands the choice back to hls.js's bandwidth estimator (Auto).
    hls.nextLevel = level >= 0 && level < hls.levels.length ? level : -1;
    showPlayingLevel();
  });

  function describe(data) {
    var parts = [data.type, data.details].filter(Boolean).join(' / ');
    if (data.response && data.response.code) parts += ' (HTTP ' + data.response.code + ')';
    if (data.error && data.error.message) parts += ': ' + data.error.message;
    return parts;
  }

  function onHlsError(event, data) {
    if (!data.fatal) return; // hls.js retries those itself
    var H = window.Hls;
    if (data.type === H.ErrorTypes.MEDIA_ERROR && !mediaRecovered) {
      // One recovery attempt: it fixes a decoder hiccup, and a second
      // failure means it will not work.
      mediaRecovered = true;
      hls.recoverMediaError();
      return;
    }
    if (data.details === H.ErrorDetails.MANIFEST_LOAD_ERROR &&
        data.response && data.response.code === 404 && manifestRetries < MANIFEST_RETRIES) {
      manifestRetries++;
      status('Waiting for “' + current.name + '” to start…');
      stop();
      retryTimer = setTimeout(load, MANIFEST_RETRY_MS);
      return;
    }
    stop();
    showError('Playback failed: ' + describe(data));
  }

  video.addEventListener('playing', function () {
    if (current) status('Playing “' + current.name + '”');
  });
  video.addEventListener('ended', function () {
    if (current) status('Finished “' + current.name + '”');
  });

  // Native playback (Safari) reports failures on the element.
  video.addEventListener('error', function () {
    if (hls || !current || !video.getAttribute('src')) return;
    var err = video.error;
    showError('Playback failed: ' + (err && err.message ? err.message : 'media error ' + (err ? err.code : '')));
  });

  $('copy').addEventListener('click', function () {
    var done = function (msg) { copiedEl.textContent = msg; };
    var fallback = function () {
      // The Clipboard API needs a secure context (https or localhost).
      urlInput.select();
      var ok = false;
      try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      done(ok ? 'Copied' : 'Press Ctrl+C to copy');
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(urlInput.value).then(function () { done('Copied'); }, fallback);
    } else {
      fallback();
    }
  });

  poll();
  pollLibrary();
})();
