// streamd page: lists the channels and plays the live ones, lists the
// library (the VOD items of GET /api/content: the public ones, and the
// members-only ones too once signed in) and plays the ready ones, in the
// same player. Every play first asks GET /api/streaming/{id} for the URL
// to play: a protected one comes signed (?st=...) for the signed-in
// viewer.
//
// Every piece of server data (channel names, titles, genres, failure
// reasons and user names, which are user data) reaches the DOM through
// textContent or a property, never through innerHTML, so nothing in it is
// ever parsed as markup.
//
// Sign-in: the tokens of POST /api/auth/login (or /api/auth/mfa/verify)
// are kept in sessionStorage, so they survive a reload but are not shared
// with other tabs, and nothing here logs them (or anything else). A call
// that gets a 401 with them refreshes the pair once (the refresh token
// rotates) and tries again; when the refresh is refused the page signs
// out.
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
  // A signed URL that stops working mid-play (it expired) is asked for
  // again, at most once in this long: a new one that fails as well is an
  // error, not a loop.
  var RENEW_MIN_MS = 30000;
  var HLS_TYPE = 'application/vnd.apple.mpegurl';
  var SESSION_KEY = 'streamd.session';

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
  var signinForm = $('signin');
  var loginInput = $('login');
  var passwordInput = $('password');
  var mfaBox = $('mfabox');
  var mfaInput = $('mfacode');
  var signinBtn = $('signinbtn');
  var signoutBtn = $('signout');
  var authStatusEl = $('authstatus');
  var authErrorEl = $('autherror');

  // What is being played: {kind: 'live', id and name (the channel's
  // name)} for a channel, {kind: 'vod', id, name (the title)} for a
  // library item; listed is the URL the list gave, url the one
  // /api/streaming gave (what plays), protected whether that one is
  // signed.
  var current = null;
  var lastLibrary = '';     // the library as last rendered, to skip no-op redraws
  var hls = null;           // hls.js instance, when hls.js plays
  var autoStarted = false;  // the first live channel starts once, by itself
  var mediaRecovered = false;
  var manifestRetries = 0;
  var retryTimer = 0;
  var offlineStop = false;  // current stopped because its channel went offline
  var playingLevel = -1;    // index in hls.levels of the level on screen
  var loadSeq = 0;          // bumped by stop(): answers for an older load are dropped
  var renewedAt = 0;        // when current's signed URL was last asked for again
  var libTimer = 0;
  var libSeq = 0;           // the library request whose answer counts

  // session is {access, refresh, user: {username, tier}} while signed in.
  var session = readSession();
  var refreshing = null;    // the refresh in flight, shared by every caller
  var mfaToken = null;      // between a login that asks for a code and the code

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

  // ---- Session and API calls ----

  function readSession() {
    try {
      var s = JSON.parse(window.sessionStorage.getItem(SESSION_KEY) || 'null');
      if (s && typeof s.access === 'string' && typeof s.refresh === 'string') {
        if (!s.user || typeof s.user.username !== 'string') s.user = { username: '', tier: '' };
        return s;
      }
    } catch (e) { /* no storage, or not ours: signed out */ }
    return null;
  }

  function storeSession(s) {
    session = s;
    try {
      if (s) window.sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
      else window.sessionStorage.removeItem(SESSION_KEY);
    } catch (e) { /* storage off: the session lasts as long as the page */ }
  }

  function requestInit(opts, s) {
    var headers = {};
    if (opts.json !== undefined) headers['Content-Type'] = 'application/json';
    if (s) headers.Authorization = 'Bearer ' + s.access;
    return {
      method: opts.method || 'GET',
      headers: headers,
      body: opts.json !== undefined ? JSON.stringify(opts.json) : undefined,
      cache: 'no-store',
      credentials: 'omit'
    };
  }

  // api fetches path with the session's access token, when signed in. A
  // 401 for that token refreshes the session once and sends the request
  // again, with the new token or, when the refresh signed the page out,
  // without one.
  function api(path, opts) {
    opts = opts || {};
    var sent = session;
    return fetch(path, requestInit(opts, sent)).then(function (res) {
      if (res.status !== 401 || !sent) return res;
      return renewSession(sent).then(function () {
        if (session === sent) return res; // not renewed (server trouble): the 401 stands
        return fetch(path, requestInit(opts, session));
      });
    });
  }

  // renewSession trades sent's refresh token for a new pair, unless the
  // session has changed since (refreshed by another call, or ended). One
  // refresh at a time: the refresh token rotates, so a second one sent
  // with the same token would be refused.
  function renewSession(sent) {
    if (session !== sent) return Promise.resolve();
    if (!refreshing) {
      refreshing = fetch('api/auth/refresh', requestInit({ method: 'POST', json: { refresh_token: sent.refresh } }, null))
        .then(readJSON)
        .then(function (r) {
          if (session !== sent) return; // signed out meanwhile
          var b = r.body;
          if (r.res.ok && b && typeof b.access_token === 'string' && typeof b.refresh_token === 'string') {
            storeSession({ access: b.access_token, refresh: b.refresh_token, user: sent.user });
          } else if (r.res.status === 400 || r.res.status === 401 || r.res.status === 403) {
            endSession('Your session has ended. Sign in again.');
          }
          // Anything else (rate limited, server trouble) keeps the
          // session: a later call tries again.
        }, function () { /* network trouble: keep the session */ })
        .then(function () { refreshing = null; });
    }
    return refreshing;
  }

  // readJSON resolves to {res, body}, body being null when it is not JSON.
  function readJSON(res) {
    return res.json().catch(function () { return null; }).then(function (body) {
      return { res: res, body: body };
    });
  }

  function serverMessage(r) {
    var e = r.body && r.body.error;
    return e && typeof e.message === 'string' ? e.message : '';
  }

  // retryAfter is the wait a 429 asks for, in seconds (0: not said).
  function retryAfter(res) {
    var v = res.headers.get('Retry-After') || '';
    var n = /^\d+$/.test(v) ? parseInt(v, 10) : Math.ceil((Date.parse(v) - Date.now()) / 1000);
    return n > 0 ? n : 0;
  }
  function tooMany(res, what) {
    var n = retryAfter(res);
    return 'Too many ' + what + ', try again ' + (n ? 'in ' + n + ' s' : 'later');
  }

  // ---- Sign-in area ----

  function authStatus(msg) { authStatusEl.textContent = msg || ''; }
  function setAuthError(msg) { setText(authErrorEl, msg); }

  function renderAuth() {
    var s = session;
    signinForm.hidden = !!s;
    signoutBtn.hidden = !s;
    mfaBox.hidden = !mfaToken;
    mfaInput.required = !!mfaToken;
    if (s) {
      var u = s.user || {};
      authStatus('Signed in as ' + (u.username || 'you') + (u.tier ? ' (' + u.tier + ')' : ''));
    }
  }

  function setBusy(on) {
    signinBtn.disabled = on;
    loginInput.readOnly = on;
    passwordInput.readOnly = on;
    mfaInput.readOnly = on;
  }

  function cancelMFA() {
    if (!mfaToken) return;
    mfaToken = null;
    mfaInput.value = '';
    authStatus('');
    renderAuth();
  }

  signinForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    if (signinBtn.disabled) return;
    setAuthError('');
    var login = loginInput.value.trim();
    var req;
    if (mfaToken) {
      var code = mfaInput.value.replace(/\s+/g, '');
      if (!code) {
        setAuthError('Enter the code from your authenticator app.');
        mfaInput.focus();
        return;
      }
      req = { path: 'api/auth/mfa/verify', json: { mfa_token: mfaToken, code: code } };
    } else {
      if (!login || !passwordInput.value) {
        setAuthError('Enter your username or email and your password.');
        (login ? passwordInput : loginInput).focus();
        return;
      }
      var body = login.indexOf('@') >= 0 ? { email: login } : { username: login };
      body.password = passwordInput.value;
      req = { path: 'api/auth/login', json: body };
    }
    setBusy(true);
    authStatus('Signing in…');
    fetch(req.path, requestInit({ method: 'POST', json: req.json }, null))
      .then(readJSON)
      .then(function (r) {
        var b = r.body;
        if (r.res.ok && b && typeof b.access_token === 'string' && typeof b.refresh_token === 'string') {
          return startSession(b, login);
        }
        if (r.res.ok && b && typeof b.mfa_token === 'string' && b.mfa_token) {
          mfaToken = b.mfa_token;
          mfaInput.value = '';
          renderAuth();
          authStatus('Enter the code from your authenticator app, or a recovery code.');
          mfaInput.focus();
          return;
        }
        authStatus('');
        if (r.res.status === 429) {
          setAuthError(tooMany(r.res, 'attempts'));
        } else {
          setAuthError(serverMessage(r) || 'Sign-in failed (HTTP ' + r.res.status + ').');
        }
        if (mfaToken) {
          mfaInput.select();
        } else {
          passwordInput.value = '';
          passwordInput.focus();
        }
      })
      .catch(function () {
        authStatus('');
        setAuthError('Cannot reach the server. Try again.');
      })
      .finally(function () { setBusy(false); });
  });

  // Editing the login or the password starts over, without the code.
  loginInput.addEventListener('input', cancelMFA);
  passwordInput.addEventListener('input', cancelMFA);

  function startSession(tokens, login) {
    mfaToken = null;
    passwordInput.value = '';
    mfaInput.value = '';
    storeSession({ access: tokens.access_token, refresh: tokens.refresh_token, user: { username: login, tier: '' } });
    return loadMe().then(function () {
      if (!session) return;
      renderAuth();
      signoutBtn.focus();
      authChanged();
    });
  }

  // loadMe reads who is signed in (GET /api/users/me) into the session.
  function loadMe() {
    return api('api/users/me').then(readJSON).then(function (r) {
      var b = r.body;
      if (!session || !r.res.ok || !b || typeof b.username !== 'string') return;
      session.user = { username: b.username, tier: typeof b.tier === 'string' ? b.tier : '' };
      storeSession(session);
      renderAuth();
    }, function () { /* keep what is known */ });
  }

  // endSession signs the page out (the tokens are forgotten); msg says
  // why, when it was not the viewer's doing.
  function endSession(msg) {
    storeSession(null);
    mfaToken = null;
    renderAuth();
    authStatus(msg ? '' : 'Signed out.');
    setAuthError(msg);
    authChanged();
  }

  signoutBtn.addEventListener('click', function () {
    var s = session;
    if (!s) return;
    endSession('');
    loginInput.focus();
    logoutOnServer(s);
  });

  // logoutOnServer ends s on the server, after the page has forgotten it.
  // An expired access token is refreshed first, so the session still ends.
  function logoutOnServer(s) {
    var send = function (access) {
      return fetch('api/auth/logout', { method: 'POST', headers: { Authorization: 'Bearer ' + access }, cache: 'no-store', credentials: 'omit' });
    };
    send(s.access).then(function (res) {
      if (res.status !== 401) return;
      return fetch('api/auth/refresh', requestInit({ method: 'POST', json: { refresh_token: s.refresh } }, null))
        .then(readJSON)
        .then(function (r) {
          if (r.res.ok && r.body && typeof r.body.access_token === 'string') return send(r.body.access_token);
        });
    }).catch(function () { /* the page has signed out all the same */ });
  }

  // authChanged follows a sign-in or sign-out: the library is asked for
  // again at once (members' items come and go), a protected source stops
  // on sign-out, and one that needed signing in plays after it.
  function authChanged() {
    pollLibrary();
    if (!current) return;
    if (session && current.needsAuth) {
      play(again(current));
    } else if (!session && current.protected) {
      var src = current;
      stop();
      src.needsAuth = true;
      // The signed URL is the viewer's: it goes with the session.
      urlInput.value = '';
      urlBox.hidden = true;
      status('');
      showError('Sign in to watch “' + src.name + '”.');
    }
  }

  // ---- Channels ----

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

  function liveSource(ch) { return { kind: 'live', id: ch.name, name: ch.name, listed: ch.url }; }
  function again(src) { return { kind: src.kind, id: src.id, name: src.name, listed: src.listed }; }

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

  // ---- Library ----

  // encoding_status is one of pending (no upload yet), uploaded,
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
      if (it.visibility === 'protected') {
        var members = node('span', 'badge members', 'Members');
        members.title = 'For signed-in members';
        b.appendChild(members);
      }
      var meta = [it.genre, ready ? '' : itemStatus(it)].filter(Boolean).join(' · ');
      if (meta) b.appendChild(node('span', 'meta', meta));
      if (ready) {
        b.addEventListener('click', function () {
          play({ kind: 'vod', id: String(it.id), name: it.title || 'Untitled', listed: it.play.hls });
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

  // pollLibrary asks for the library now, and every LIBRARY_POLL_MS
  // after; calling it again (on sign-in or sign-out) drops the answer of
  // the request before, which was made with the other identity.
  function pollLibrary() {
    clearTimeout(libTimer);
    var seq = ++libSeq;
    api('api/content?limit=' + LIBRARY_LIMIT)
      .then(function (res) {
        return res.json().catch(function () { return null; }).then(function (body) {
          if (res.ok && body && Array.isArray(body.items)) return body;
          if (res.status === 404) throw new Error('The library is not available on this server.');
          var msg = body && body.error && body.error.message;
          throw new Error('Cannot load the library: ' + (msg || 'HTTP ' + res.status));
        });
      })
      .then(function (body) {
        if (seq !== libSeq) return;
        setLibraryError('');
        renderLibrary(body.items, !!body.next_after);
      })
      .catch(function (e) { if (seq === libSeq) setLibraryError(e.message); })
      .finally(function () {
        if (seq === libSeq) libTimer = setTimeout(pollLibrary, LIBRARY_POLL_MS);
      });
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

  // ---- Player ----

  function stop() {
    loadSeq++;
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
        if (e && e.name === 'NotAllowedError' && current) status('Press play to start “' + current.name + '”.');
      });
    }
  }

  // streamingURL asks the server how src plays (GET /api/streaming/{id})
  // and resolves to {url, protected}; it rejects with an Error whose
  // message is for the error line (needsAuth set when signing in helps).
  function streamingURL(src) {
    return api('api/streaming/' + encodeURIComponent(src.id)).then(readJSON).then(function (r) {
      var b = r.body;
      var res = r.res;
      if (res.ok && b && typeof b.hls === 'string' && b.hls !== '') {
        return { url: b.hls, protected: b.protected === true };
      }
      var msg = serverMessage(r);
      var err;
      if (res.status === 401) {
        err = new Error('Sign in to watch “' + src.name + '”.');
        err.needsAuth = true;
        throw err;
      }
      if (res.status === 404 && !msg && src.listed) {
        // A server without the streaming API: the listed URL is it.
        return { url: src.listed, protected: false };
      }
      if (res.status === 429) throw new Error('Cannot play “' + src.name + '”: ' + tooMany(res, 'requests') + '.');
      if (res.status === 409) throw new Error('“' + src.name + '” cannot play yet: ' + (msg || 'it is not ready') + '.');
      throw new Error('Cannot play “' + src.name + '”: ' + (msg || 'HTTP ' + res.status));
    }, function () {
      throw new Error('Cannot play “' + src.name + '”: the server cannot be reached.');
    });
  }

  function setSource(src, p) {
    src.url = p.url;
    src.protected = p.protected;
    src.needsAuth = false;
    urlInput.value = new URL(p.url, location.href).href;
    copiedEl.textContent = '';
    urlBox.hidden = false;
  }

  function cannotPlay(src, e) {
    src.needsAuth = !!e.needsAuth;
    status('');
    showError(e.message);
  }

  // play starts a source: a live channel or a ready library item, at the
  // URL /api/streaming gives for it.
  function play(src) {
    stop();
    current = src;
    autoStarted = true; // once something played, a channel going live does not take over
    offlineStop = false;
    mediaRecovered = false;
    manifestRetries = 0;
    renewedAt = 0;
    showError('');
    status('Loading “' + src.name + '”…');
    urlInput.value = '';
    copiedEl.textContent = '';
    urlBox.hidden = true;
    markCurrent();
    var seq = loadSeq;
    streamingURL(src).then(function (p) {
      if (seq !== loadSeq) return; // something else plays by now
      setSource(src, p);
      load();
    }, function (e) {
      if (seq === loadSeq) cannotPlay(src, e);
    });
  }

  // renew asks for current's URL again, its signed one having stopped
  // working, and plays on from where it was (a library item) or from the
  // live edge (a channel).
  function renew() {
    var src = current;
    var pos = src.kind === 'vod' ? video.currentTime : -1;
    renewedAt = Date.now();
    stop();
    status('Renewing access to “' + src.name + '”…');
    var seq = loadSeq;
    streamingURL(src).then(function (p) {
      if (seq !== loadSeq) return;
      setSource(src, p);
      src.resume = pos > 0 ? pos : -1;
      load();
    }, function (e) {
      if (seq === loadSeq) cannotPlay(src, e);
    });
  }

  function load() {
    if (window.Hls && window.Hls.isSupported()) {
      var cfg = {};
      if (current.resume > 0) cfg.startPosition = current.resume;
      hls = new window.Hls(cfg);
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
      if (current.resume > 0) video.currentTime = current.resume;
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
    var H = window.Hls;
    var code = data.response && data.response.code;
    // The origin refuses a signed URL that expired with a 403 (and asks
    // for one with a 401 when the source became protected): rather than
    // let hls.js give up on level after level, ask for a new URL at the
    // first such answer, once in RENEW_MIN_MS.
    if (data.type === H.ErrorTypes.NETWORK_ERROR && current &&
        ((code === 403 && current.protected) || code === 401) &&
        Date.now() - renewedAt >= RENEW_MIN_MS) {
      renew();
      return;
    }
    if (!data.fatal) return; // hls.js retries those itself
    if (data.type === H.ErrorTypes.MEDIA_ERROR && !mediaRecovered) {
      // One recovery attempt: it fixes a decoder hiccup, and a second
      // failure means it will not work.
      mediaRecovered = true;
      hls.recoverMediaError();
      return;
    }
    if (data.details === H.ErrorDetails.MANIFEST_LOAD_ERROR &&
        code === 404 && manifestRetries < MANIFEST_RETRIES) {
      // The same (signed, for a protected channel) URL, a bit later.
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

  renderAuth();
  // A session from before a reload: check it is still good (and who it
  // is), refreshing it if its access token has expired.
  if (session) loadMe();
  poll();
  pollLibrary();
})();
