// svcreg dashboard. Talks only to the public API of the server that served
// it: POST/DELETE /v2.0/tokens and /v1.0/{tenant}/... with X-Auth-Token.
// Registry data is untrusted: it only ever reaches the page as text
// (textContent / createTextNode), never as markup.
'use strict';

(function () {
  var SESSION_KEY = 'svcreg.session';
  // The page opts in to service.update (a change of a service's tags,
  // metadata or timeout), which the feed shows only to clients that ask.
  var EVENT_TYPES = ['service.join', 'service.update', 'service.remove', 'service.timeout',
    'configuration_value.update', 'configuration_value.remove'];
  var FEED = '/events?limit=1000&include=service.update';
  var FEED_KEEP = 500;   // events kept in the feed view (and held while paused)
  var SEEN_KEEP = 5000;  // event ids remembered to drop repeats
  var LONG_POLL = '50s'; // under the server's 60s write timeout
  // A request's answer must come in full within REQUEST_LIMIT, a long-poll's
  // within POLL_LIMIT (its wait and 30 s), or it fails (api).
  var REQUEST_LIMIT = 60000;
  var POLL_LIMIT = 80000;
  // Every request is a GET the account's daily limit counts, shared with
  // its renderers: the page takes the services' changes from the feed's
  // events, and asks the feed again FEED_GATHER after an answer with
  // events (those of the meantime come in one answer). It lists the
  // services again for what no event tells (a heartbeat: a countdown
  // that reached zero) at most every RELIST_EVERY for each page the list
  // takes (1000 services). Before, one open page at ten changes a second
  // made 15 GETs a second, more than the default limit of 500,000 a day,
  // and a list of 20 pages read every 2 s made 10.
  var RELIST_EVERY = 2000;
  var FEED_GATHER = 1000;
  // The services table shows PAGE_ROWS of the services that match the
  // filter at a time, with Previous and Next: a table of every service took
  // the browser 15 s to lay out at 10,000 services, and more than a second
  // again on every keystroke in the filter and every change.
  var PAGE_ROWS = 100;
  // SERVICE_ID is the API's rule for a service id in a path (spec §5).
  var SERVICE_ID = /^[a-z0-9_.\-]{3,65}$/i;
  // LOST stands in the feed view for the events lost at its place.
  var LOST = {};

  var $ = function (id) { return document.getElementById(id); };

  // shown is text as the page shows it: a character that is not a letter,
  // mark, number, punctuation, symbol or space (a bidirectional override,
  // which shows the tag "\u202edorp" as "prod"; a zero-width space; a
  // control; a newline or a tab, which would make one value look like
  // two), a default-ignorable one that shows as nothing (the combining
  // grapheme joiner, U+034F; a variation selector, unless it picks the
  // form of an emoji or an ideograph), or a letter or symbol that shows as
  // blank (a Hangul filler), is written as an escape, and then a backslash
  // doubled, so that an escape shown is never the text's own; as the
  // command line and the renderer's status page write it. Text with
  // nothing to escape is returned as it is. shownNodes is the same text
  // with each escape marked (class esc), so that the text "\u200b" and an
  // escaped zero-width space do not read alike.
  var HIDDEN = /[^\p{L}\p{M}\p{N}\p{P}\p{S} ]|[\u115f\u1160\u3164\uffa0\u2800]|\p{Default_Ignorable_Code_Point}/u;
  var HIDDEN_ALL = new RegExp(HIDDEN.source, 'gu');
  var PRESENTATION = /^[\ufe0e\ufe0f]$/, IDEOGRAPHIC_VARIATION = /^[\u{e0100}-\u{e01ef}]$/u;
  var SYMBOL = /^\p{S}$/u, IDEOGRAPH = /^\p{Ideographic}$/u;
  var LETTER_ESCAPES = { '\x07': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v' };
  // picksForm reports whether c, at at in s, is a variation selector that
  // picks the form of the character before it as text needs it to: the
  // text or emoji presentation selector after a symbol other than ASCII
  // (an emoji), an ideographic variation selector after an ideograph. The
  // character before must be shown as it is: escaped is not true when it
  // was written as an escape.
  function picksForm(s, at, c, escaped) {
    if (at === 0 || escaped) return false;
    var i = at - 1, lo = s.charCodeAt(i);
    if (lo >= 0xdc00 && lo <= 0xdfff && i > 0) {
      var hi = s.charCodeAt(i - 1);
      if (hi >= 0xd800 && hi <= 0xdbff) i--;
    }
    var cp = s.codePointAt(i), before = String.fromCodePoint(cp);
    if (PRESENTATION.test(c)) return cp >= 0x80 && cp !== 0xfffd && SYMBOL.test(before);
    if (IDEOGRAPHIC_VARIATION.test(c)) return IDEOGRAPH.test(before);
    return false;
  }
  // pieces splits s into [text, escape, text, escape, ..., text], or
  // returns null if nothing in it is escaped. The text's own backslashes,
  // doubled, are escapes too.
  function pieces(s) {
    s = String(s);
    if (!HIDDEN.test(s)) return null;
    var out = [], last = 0, escEnd = -1;
    s.replace(HIDDEN_ALL, function (c, at) {
      if (picksForm(s, at, c, at === escEnd)) return c;
      var cp = c.codePointAt(0), h = cp.toString(16), e;
      if (LETTER_ESCAPES[c]) e = LETTER_ESCAPES[c];
      else if (cp < 0x80) e = '\\x' + ('0' + h).slice(-2);
      else if (cp <= 0xffff) e = '\\u' + ('000' + h).slice(-4);
      else e = '\\U' + ('0000000' + h).slice(-8);
      out.push(s.slice(last, at), e);
      last = escEnd = at + c.length;
      return c;
    });
    if (!out.length) return null;
    out.push(s.slice(last));
    var split = [];
    out.forEach(function (p, i) {
      if (i % 2) { split.push(p); return; }
      p.split('\\').forEach(function (t, j) {
        if (j > 0) split.push('\\\\');
        split.push(t);
      });
    });
    return split;
  }
  function shown(s) {
    var p = pieces(s);
    return p ? p.join('') : String(s);
  }
  // A text's escapes next to each other are one run, marked as one; past
  // MARKED_RUNS runs, the rest of the text is marked as a whole (class
  // esc rest). An element each made a value of 255 escapes 255 elements,
  // and 200 services of 20 such a table that took the browser many
  // seconds to lay out again on every change. The escapes stay told from
  // the text's own characters: its backslashes are doubled.
  var MARKED_RUNS = 4;
  function shownNodes(s) {
    var p = pieces(s);
    if (!p) return document.createTextNode(String(s));
    var runs = []; // [escape?, text], escape runs and text alternating
    p.forEach(function (t, i) {
      if (!t) return;
      var last = runs[runs.length - 1], esc = i % 2 === 1;
      if (last && last[0] === esc) last[1] += t; else runs.push([esc, t]);
    });
    var f = document.createDocumentFragment(), marked = 0;
    for (var i = 0; i < runs.length; i++) {
      if (!runs[i][0]) { f.appendChild(document.createTextNode(runs[i][1])); continue; }
      var e = document.createElement('span');
      if (marked++ === MARKED_RUNS) {
        e.className = 'esc rest';
        e.title = 'more escapes than are marked one by one';
        e.textContent = runs.slice(i).map(function (r) { return r[1]; }).join('');
        f.appendChild(e);
        break;
      }
      e.className = 'esc';
      e.textContent = runs[i][1];
      f.appendChild(e);
    }
    return f;
  }

  // jsonShown is JSON text shown: the characters shown escapes, written as
  // JSON's own escapes, so that the text is still the same JSON (outside
  // its strings JSON text is ASCII, and its newlines and tabs are its
  // layout).
  function jsonShown(s) {
    var escEnd = -1;
    return s.replace(HIDDEN_ALL, function (c, at) {
      if (c === '\n' || c === '\t' || picksForm(s, at, c, at === escEnd)) return c;
      escEnd = at + c.length;
      var out = '';
      for (var i = 0; i < c.length; i++) out += '\\u' + ('000' + c.charCodeAt(i).toString(16)).slice(-4);
      return out;
    });
  }

  // el builds an element; children are nodes or strings (added as text,
  // shown).
  function el(tag, cls, children) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      e.appendChild(typeof c === 'string' ? shownNodes(c) : c);
    });
    return e;
  }
  function text(tag, cls, s) { return el(tag, cls, [String(s)]); }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

  // ---- session ---------------------------------------------------------

  var session = null;  // {token, tenant, user, expires}
  var run = null;      // per-session state; replaced on every sign-in
  var pristine = null; // the page's body as served, before any data

  function loadSession() {
    try {
      var s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
      if (s && typeof s.token === 'string' && /^[0-9]+$/.test(s.tenant)) return s;
    } catch (e) { /* ignore a damaged entry */ }
    return null;
  }

  function AuthError() { this.message = 'signed out'; }

  // endSession forgets the session and puts the page back as it was
  // served, so that nothing of the account's registry data stays in it
  // (a hidden view, the tag list, a count; the session's state goes with
  // its Run), nor in the address (a service's id in the route); the page
  // then says message. It works with the server out of reach.
  function endSession(message) {
    if (run) run.stop();
    run = null;
    session = null;
    sessionStorage.removeItem(SESSION_KEY);
    document.body.replaceWith(pristine.cloneNode(true));
    bind();
    if (location.hash) history.replaceState(null, '', location.pathname + location.search);
    showSignIn(message);
  }

  function signIn(user, secret, kind) {
    var cred = kind === 'password'
      ? { passwordCredentials: { username: user, password: secret } }
      : { 'RAX-KSKEY:apiKeyCredentials': { username: user, apiKey: secret } };
    return fetch('/v2.0/tokens', {
      method: 'POST', cache: 'no-store', credentials: 'omit',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: JSON.stringify({ auth: cred })
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) {
        if (!r.ok) {
          var f = b && typeof b === 'object' ? b[Object.keys(b)[0]] : null;
          var msg = f && typeof f.message === 'string' ? f.message : 'Sign-in failed (' + r.status + ')';
          if (r.status === 429) msg = 'Too many attempts; try again later.';
          throw new Error(msg);
        }
        var t = b.access && b.access.token;
        if (!t || typeof t.id !== 'string' || !t.tenant || !/^[0-9]+$/.test(String(t.tenant.id))) {
          throw new Error('The identity endpoint gave an unexpected answer.');
        }
        return { token: t.id, tenant: String(t.tenant.id), user: user, expires: t.expires || '' };
      });
    });
  }

  // signOut revokes the session's token, then ends the session, within
  // REVOKE_WAIT. The page says so if the server did not confirm the
  // revocation: the token then stays valid until it expires.
  var REVOKE_WAIT = 5000;
  function signOut() {
    var s = session;
    if (!s) return endSession('Signed out.');
    $('signout').disabled = true;
    var ctrl = new AbortController();
    setTimeout(function () { ctrl.abort(); }, REVOKE_WAIT);
    fetch('/v2.0/tokens/' + encodeURIComponent(s.token), {
      method: 'DELETE', cache: 'no-store', credentials: 'omit', signal: ctrl.signal,
      headers: { 'X-Auth-Token': s.token }
    }).then(function (r) {
      // 401 and 404: the token was no longer valid.
      return r.status === 204 || r.status === 401 || r.status === 404;
    }, function () { return false; }).then(function (revoked) {
      if (session !== s) return;
      endSession(revoked ? 'Signed out.'
        : 'Signed out of this page, but the server did not confirm that it revoked the session' +
          (s.expires ? ', which stays valid until ' + s.expires : ', which stays valid until it expires') + '.');
    });
  }

  // api calls /v1.0/{tenant}{path}. A 401 ends the session: the token
  // expired or was revoked, and the user signs in again.
  // api GETs path of the session's account. A request not answered in
  // full within limit (REQUEST_LIMIT if not given) fails, as one the
  // registry did not answer: a server whose host died, or a connection a
  // middlebox dropped, answers nothing and closes nothing, and the page
  // would wait on it for good, still saying "live".
  function api(path, signal, limit) {
    var s = session;
    if (!s) return Promise.reject(new AuthError());
    limit = limit || REQUEST_LIMIT;
    var own = new AbortController(), late = false;
    var abort = function () { own.abort(); };
    if (signal) {
      if (signal.aborted) own.abort();
      else signal.addEventListener('abort', abort);
    }
    var timer = setTimeout(function () { late = true; own.abort(); }, limit);
    var done = function () {
      clearTimeout(timer);
      if (signal) signal.removeEventListener('abort', abort);
    };
    return fetch('/v1.0/' + s.tenant + path, {
      cache: 'no-store', credentials: 'omit', signal: own.signal,
      headers: { 'X-Auth-Token': s.token, 'Accept': 'application/json' }
    }).then(function (r) {
      if (r.status === 401) {
        if (session === s) endSession('Your session has expired or was revoked. Sign in again.');
        throw new AuthError();
      }
      return r.json().catch(function () { return null; }).then(function (b) {
        // An answer to a session that ended meanwhile is dropped: nothing
        // of it reaches the page put back for sign-in.
        if (session !== s) throw new AuthError();
        if (!r.ok) {
          var e = new Error((b && b.message) || ('HTTP ' + r.status));
          e.status = r.status;
          e.type = b && b.type;
          throw e;
        }
        return { body: b, headers: r.headers };
      });
    }).then(function (res) { done(); return res; }, function (e) {
      done();
      if (late && !(signal && signal.aborted)) throw new Error('no answer within ' + Math.round(limit / 1000) + ' s');
      throw e;
    });
  }

  // list follows next_marker and returns every value, the first page's
  // X-Registry-Marker and the number of pages read.
  function list(path, signal) {
    var values = [], feed = null, pages = 0;
    function page(marker) {
      var sep = path.indexOf('?') < 0 ? '?' : '&';
      var q = path + sep + 'limit=1000' + (marker ? '&marker=' + encodeURIComponent(marker) : '');
      return api(q, signal).then(function (res) {
        if (feed === null) feed = res.headers.get('X-Registry-Marker');
        pages++;
        values = values.concat(res.body.values || []);
        var next = res.body.metadata && res.body.metadata.next_marker;
        return next ? page(next) : { values: values, marker: feed, pages: pages };
      });
    }
    return page('');
  }

  // ---- views -----------------------------------------------------------

  var VIEWS = ['services', 'service', 'events', 'config', 'limits'];

  function showSignIn(message) {
    VIEWS.forEach(function (v) { $('view-' + v).hidden = true; });
    $('nav').hidden = true;
    $('who').hidden = true;
    $('signin').hidden = false;
    notice(message || '');
    $('signin-secret').value = '';
    $('signin-user').focus();
  }

  function notice(msg) {
    clear($('notice'));
    $('notice').appendChild(shownNodes(msg || ''));
    $('notice').hidden = !msg;
  }

  function route() {
    if (!session) return showSignIn();
    var h = location.hash.replace(/^#/, '');
    var view = h.split('/')[0] || 'services';
    if (VIEWS.indexOf(view) < 0) view = 'services';
    $('signin').hidden = true;
    $('nav').hidden = false;
    $('who').hidden = false;
    VIEWS.forEach(function (v) { $('view-' + v).hidden = v !== view; });
    Array.prototype.forEach.call(document.querySelectorAll('#nav a'), function (a) {
      var on = a.getAttribute('data-view') === (view === 'service' ? 'services' : view);
      a.classList.toggle('active', on);
      if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    });
    if (view === 'service') {
      var id = '';
      try { id = decodeURIComponent(h.slice('service/'.length)); } catch (e) { id = ''; }
      run.showService(id);
    }
    if (view === 'config') run.showConfig();
    if (view === 'limits') run.loadLimits();
  }

  // ---- one signed-in session ---------------------------------------------

  function Run() {
    var self = this;
    var ctrl = new AbortController();
    var stopped = false;
    var services = new Map();  // id → service
    var entries = new Map();   // id → the service with its text to filter and sort by
    var order = null;          // entries in the table's order; null: to sort again
    var tagsShown = null;      // the tags the tag filter offers, as JSON
    var page = 0;              // the table's page, from 0
    var listPages = 1;         // the pages the last read of the list took
    var joined = new Map();    // id → join time (ms), from the feed
    // id → {from, timeout}: the timeout the deadline counts with from the
    // last heartbeat (from: its last_seen, or null before the first). A
    // change of the timeout applies from the next heartbeat (spec §7.5):
    // until then the deadline stays.
    var counted = new Map();
    var seen = new Set();      // event ids taken, the last SEEN_KEEP
    var seenOrder = [];
    var events = [];           // newest last
    var held = [];             // events that arrived while paused (the last FEED_KEEP)
    var heldCount = 0;
    var paused = false;
    var skew = 0;              // server clock − browser clock, ms
    var sortKey = 'id', sortDir = 1;
    var detailId = null;
    var timers = [];
    var relistAt = 0;

    this.stop = function () {
      stopped = true;
      ctrl.abort();
      timers.forEach(clearInterval);
      clear($('svc-body'));
      clear($('ev-list'));
      clear($('cfg-tree'));
      clear($('limits'));
    };

    function failed(e) {
      if (e instanceof AuthError || stopped || (e && e.name === 'AbortError')) return;
      notice('The registry did not answer: ' + e.message);
    }

    function serverNow() { return Date.now() + skew; }
    function noteClock(headers) {
      var d = Date.parse(headers.get('Date') || '');
      // The Date header has whole seconds: only a larger difference counts.
      if (!isNaN(d) && Math.abs(d - Date.now()) > 2000) skew = d - Date.now();
    }

    // -- services --
    // latest makes a loader that runs one request at a time. A call while
    // one is under way (which may have read the registry before the change
    // that prompted the call) loads once more after it.
    function latest(load) {
      var running = null, again = false;
      return function run() {
        if (running) { again = true; return running; }
        running = load().then(function (v) {
          running = null;
          if (again) { again = false; run().catch(failed); }
          return v;
        }, function (e) { running = null; again = false; throw e; });
        return running;
      };
    }

    // mirrored reads a list and notes the events applied meanwhile
    // (note), which come with it (res.during): the list's last pages may
    // have been read before a change whose event came meanwhile, so they
    // are applied to it again, in order (one the list holds already gives
    // the same state again). One for the services, one for the
    // configuration.
    function mirrored(path) {
      var during = null;
      return {
        note: function (ev) { if (during) during.push(ev); },
        list: function () {
          var mine = during = [];
          return list(path, ctrl.signal).then(function (res) {
            during = null;
            res.during = mine;
            return res;
          }, function (e) {
            if (during === mine) during = null;
            throw e;
          });
        }
      };
    }
    var servicesListed = mirrored('/services');
    // id → a service removed by an event older than its last heartbeat:
    // the list read after had it registered again (apply).
    var reRegistered = new Map();
    var loadServices = latest(function () {
      return servicesListed.list().then(function (res) {
        services = new Map();
        reRegistered = new Map();
        res.values.forEach(function (s) { services.set(s.id, s); });
        // A service not heartbeated since keeps the timeout it counts
        // with; one heartbeated since counts with the one listed.
        var before = counted;
        counted = new Map();
        entries = new Map();
        services.forEach(function (s) {
          var c = before.get(s.id), from = lastSeen(s);
          counted.set(s.id, c && c.from === from ? c : { from: from, timeout: s.heartbeat_timeout });
          entries.set(s.id, entry(s));
        });
        res.during.forEach(apply);
        listPages = Math.max(1, res.pages);
        // Join times matter until the first heartbeat: 120s at most.
        joined.forEach(function (at, id) { if (!services.has(id) && serverNow() - at > 130000) joined.delete(id); });
        relistAt = Date.now();
        applied();
        notice('');
        return res.marker;
      });
    });
    var relistTimer = null;
    // apply takes a service event the feed brought into the services
    // listed, and reports whether it did: the table shows a change when
    // its event comes, and the list is read again (relistEvery) for what
    // no event tells, a heartbeat. An event's payload is the service
    // without last_seen: an update keeps the one listed, a join has none
    // unless one listed is as new.
    function apply(ev) {
      var p = ev.payload;
      if (!p || typeof p !== 'object' || typeof p.id !== 'string') return false;
      if (ev.type === 'service.remove' || ev.type === 'service.timeout') {
        servicesListed.note(ev);
        // One heartbeated after the event is the service registered again
        // since (a list read after it): its join, which comes next, keeps
        // that heartbeat.
        var had = services.get(p.id);
        if (had && lastSeen(had) !== null && typeof ev.timestamp === 'number' && had.last_seen > ev.timestamp) reRegistered.set(p.id, had);
        else counted.delete(p.id);
        services.delete(p.id);
        entries.delete(p.id);
        return true;
      }
      if ((ev.type !== 'service.join' && ev.type !== 'service.update') || typeof p.heartbeat_timeout !== 'number') return false;
      servicesListed.note(ev);
      var old = services.get(p.id);
      if (!old && ev.type === 'service.join') old = reRegistered.get(p.id);
      reRegistered.delete(p.id);
      var s = {
        id: p.id,
        // The registry's tags and metadata values are strings: anything
        // else (which no svcreg server sends) is left out, not shown.
        tags: Array.isArray(p.tags) ? p.tags.filter(function (t) { return typeof t === 'string'; }) : [],
        metadata: strings(p.metadata),
        heartbeat_timeout: p.heartbeat_timeout,
        // A heartbeat after the join (the list read again since) stays.
        last_seen: old && lastSeen(old) !== null && (ev.type === 'service.update' || old.last_seen >= ev.timestamp) ? old.last_seen : null
      };
      // A join counts with its timeout from the join; a change keeps the
      // timeout counted with until the next heartbeat.
      var c = counted.get(s.id);
      if (!c || c.from !== lastSeen(s) || (ev.type === 'service.join' && s.last_seen === null)) {
        counted.set(s.id, { from: lastSeen(s), timeout: ev.type === 'service.update' && old ? old.heartbeat_timeout : s.heartbeat_timeout });
      }
      services.set(s.id, s);
      entries.set(s.id, entry(s));
      return true;
    }
    // strings is the string values of m, an object of an event's payload.
    function strings(m) {
      var out = {};
      if (!m || typeof m !== 'object' || Array.isArray(m)) return out;
      Object.keys(m).forEach(function (k) {
        if (typeof m[k] === 'string') Object.defineProperty(out, k, { value: m[k], enumerable: true, writable: true, configurable: true });
      });
      return out;
    }
    // applied shows the services after events changed them.
    function applied() {
      order = null;
      renderTags();
      renderServices();
      if (detailId !== null) renderDetail();
      limitsChanged();
    }

    function relistSoon() {
      if (relistTimer) return;
      var wait = Math.max(150, relistAt + relistEvery() - Date.now());
      relistTimer = setTimeout(function () { relistTimer = null; loadServices().catch(failed); }, wait);
    }

    function relistEvery() { return RELIST_EVERY * listPages; }

    function lastSeen(s) { return typeof s.last_seen === 'number' ? s.last_seen : null; }
    function deadline(s) {
      var from = lastSeen(s);
      if (from === null) from = joined.get(s.id);
      var c = counted.get(s.id);
      var timeout = c && c.from === lastSeen(s) ? c.timeout : s.heartbeat_timeout;
      return typeof from === 'number' ? from + timeout * 1000 : null;
    }
    function left(s) {
      var d = deadline(s);
      return d === null ? null : Math.max(0, Math.ceil((d - serverNow()) / 1000));
    }
    function fmtLeft(n) {
      if (n === null) return 'no heartbeat yet';
      if (n >= 120) return Math.floor(n / 60) + 'm ' + ('0' + (n % 60)).slice(-2) + 's';
      return n + 's';
    }
    function metaText(s) {
      return Object.keys(s.metadata || {}).sort().map(function (k) { return k + '=' + s.metadata[k]; }).join(' ');
    }

    // entry is a service with the text the filter searches, as stored and
    // as shown (escaped; null if the same): either matches.
    function entry(s) {
      var meta = metaText(s);
      var hay = s.id + ' ' + (s.tags || []).join(' ') + ' ' + meta, alt = shown(hay);
      return { s: s, tags: (s.tags || []).join(','), meta: meta, hay: hay.toLowerCase(), alt: alt === hay ? null : alt.toLowerCase() };
    }

    // sorted is the entries in the table's order; ties by id.
    function sorted() {
      var key = {
        id: function (e) { return e.s.id; },
        tags: function (e) { return e.tags; },
        metadata: function (e) { return e.meta; },
        timeout: function (e) { return e.s.heartbeat_timeout; },
        left: function (e) { var n = left(e.s); return n === null ? Infinity : n; }
      }[sortKey];
      var keyed = Array.from(entries.values(), function (e) { return { e: e, k: key(e) }; });
      keyed.sort(function (a, b) {
        if (a.k < b.k) return -sortDir;
        if (a.k > b.k) return sortDir;
        var x = a.e.s.id, y = b.e.s.id;
        return x < y ? -1 : x > y ? 1 : 0;
      });
      return keyed.map(function (k) { return k.e; });
    }

    // visibleServices is the services that match the filter, in order. The
    // order is kept until the list or the order changes (the time left
    // changes by itself: sorted by it, every time).
    function visibleServices() {
      var q = $('svc-filter').value.trim().toLowerCase();
      var tag = $('svc-tag').value;
      if (!order || sortKey === 'left') order = sorted();
      var out = [];
      for (var i = 0; i < order.length; i++) {
        var e = order[i];
        if (tag && (e.s.tags || []).indexOf(tag) < 0) continue;
        if (q && e.hay.indexOf(q) < 0 && (e.alt === null || e.alt.indexOf(q) < 0)) continue;
        out.push(e.s);
      }
      return out;
    }

    function tagList(tags) {
      return el('span', 'tags', (tags || []).map(function (t) { return text('span', 'tag', t); }));
    }
    function metaList(m) {
      var keys = Object.keys(m || {}).sort();
      return el('span', 'meta', keys.map(function (k) {
        return el('span', 'kv', [text('span', 'k', k), text('span', 'v', m[k])]);
      }));
    }

    // renderTags offers the services' tags in the tag filter, when they
    // changed.
    function renderTags() {
      var sel = $('svc-tag'), current = sel.value, tags = new Set();
      services.forEach(function (s) { (s.tags || []).forEach(function (t) { tags.add(t); }); });
      var all = Array.from(tags).sort(), key = JSON.stringify(all);
      if (key === tagsShown) return;
      tagsShown = key;
      sel.length = 1;
      all.forEach(function (t) {
        var o = document.createElement('option');
        o.value = t;
        o.textContent = shown(t);
        // An option holds text only: one with escapes is marked by its
        // colour.
        if (pieces(t)) o.className = 'esc';
        sel.appendChild(o);
      });
      sel.value = tags.has(current) ? current : '';
      // The tag chosen went: the filter is all tags, shown from the first
      // page, as after any change of the filter.
      if (sel.value !== current) page = 0;
    }

    // renderServices shows the table's page of the services that match
    // the filter.
    function renderServices() {
      var rows = visibleServices();
      var pages = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
      page = Math.min(page, pages - 1);
      var from = page * PAGE_ROWS, to = Math.min(from + PAGE_ROWS, rows.length);
      var f = document.createDocumentFragment();
      rows.slice(from, to).forEach(function (s) {
        var a = text('a', 'mono', s.id);
        a.href = '#service/' + encodeURIComponent(s.id);
        var tr = el('tr', null, [
          el('td', 'id', [a]),
          el('td', null, [tagList(s.tags)]),
          el('td', null, [metaList(s.metadata)]),
          text('td', 'num', s.heartbeat_timeout + 's'),
          text('td', 'num countdown', fmtLeft(left(s)))
        ]);
        tr.dataset.id = s.id;
        f.appendChild(tr);
      });
      var body = $('svc-body');
      clear(body);
      body.appendChild(f);
      $('svc-count').textContent = String(services.size);
      $('svc-empty').hidden = rows.length > 0;
      $('svc-empty').textContent = services.size ? 'No service matches the filter.' : 'No services registered.';
      $('svc-pager').hidden = rows.length <= PAGE_ROWS;
      var range = (from + 1) + '\u2013' + to + ' of ' + rows.length;
      if ($('svc-range').textContent !== range) $('svc-range').textContent = range;
      // A button disabled loses the focus, to the page's top: a keyboard
      // user at the last page (or the first) is kept on the pager.
      var focused = document.activeElement;
      $('svc-prev').disabled = page === 0;
      $('svc-next').disabled = page === pages - 1;
      if (focused && focused.disabled && (focused.id === 'svc-prev' || focused.id === 'svc-next')) {
        var other = $(focused.id === 'svc-prev' ? 'svc-next' : 'svc-prev');
        if (!other.disabled && !$('svc-pager').hidden) other.focus();
      }
      Array.prototype.forEach.call(document.querySelectorAll('#svc-table th button'), function (b) {
        var k = b.getAttribute('data-sort');
        b.parentNode.setAttribute('aria-sort', k === sortKey ? (sortDir > 0 ? 'ascending' : 'descending') : 'none');
      });
    }
    // filterChanged shows the first page of what the filter now matches.
    this.filterChanged = function () { page = 0; renderServices(); };
    // turnPage shows the next (1) or the previous (-1) page, from its top,
    // and has a screen reader say which (the range itself changes with
    // every service that comes or goes, and is not read out).
    this.turnPage = function (by) {
      page = Math.max(0, page + by);
      renderServices();
      $('svc-turned').textContent = 'Services ' + $('svc-range').textContent;
      if ($('svc-table').getBoundingClientRect().top < 0) $('svc-table').scrollIntoView();
    };

    // tick updates the countdowns in place once a second. When one reaches
    // zero the list is read again: the service was heartbeated (no event
    // says so) or it is about to time out (an event will say so).
    function tick() {
      var due = false;
      Array.prototype.forEach.call($('svc-body').rows, function (tr) {
        var s = services.get(tr.dataset.id);
        if (!s) return;
        var n = left(s);
        if (n === 0) due = true;
        var cell = tr.cells[4];
        var t = fmtLeft(n);
        if (cell.textContent !== t) cell.textContent = t;
        cell.classList.toggle('warn', n !== null && n <= Math.max(3, s.heartbeat_timeout * 0.2));
      });
      // The detail's countdown too: shown, its service may be on no page
      // of the table (another page, or filtered out).
      if (detailId !== null) {
        var s = services.get(detailId);
        var dd = $('detail-left');
        if (s && dd) {
          var n = left(s);
          if (n === 0 && !$('view-service').hidden) due = true;
          dd.textContent = fmtLeft(n);
        }
      }
      if (due && Date.now() - relistAt > relistEvery()) loadServices().catch(failed);
    }

    this.showService = function (id) {
      detailId = id;
      renderDetail();
    };
    function renderDetail() {
      var s = services.get(detailId);
      var dl = $('detail-summary');
      clear(dl);
      clear($('detail-id'));
      var pre = $('detail-json');
      if (!s && !SERVICE_ID.test(detailId)) {
        // A link's text, not a service's id: shown as the heading, it
        // would say whatever whoever made the link wrote.
        $('detail-id').textContent = 'No such service';
        dl.appendChild(text('dd', 'muted', 'The link names no service: a service id is 3 to 65 letters, digits, "_", "-" and ".".'));
        pre.textContent = '';
        return;
      }
      $('detail-id').appendChild(shownNodes(detailId));
      if (!s) {
        dl.appendChild(text('dd', 'muted', 'Not registered (removed, timed out, or never seen by this account).'));
        pre.textContent = '';
        return;
      }
      function row(k, v) { dl.appendChild(text('dt', null, k)); dl.appendChild(el('dd', null, [v])); }
      row('Tags', tagList(s.tags));
      row('Metadata', metaList(s.metadata));
      row('Heartbeat timeout', s.heartbeat_timeout + 's');
      row('Last heartbeat', typeof s.last_seen === 'number' ? new Date(s.last_seen).toISOString() : 'none yet');
      var d = text('span', 'countdown', fmtLeft(left(s)));
      d.id = 'detail-left';
      row('Times out in', d);
      pre.textContent = jsonShown(JSON.stringify(s, null, 2));
    }

    // -- events --
    function evSummary(ev) {
      var p = ev.payload || {};
      if (ev.type.indexOf('service.') === 0) return String(p.id);
      if (ev.type === 'configuration_value.update') return String(p.configuration_value_id) + ' = ' + String(p.new_value);
      return String(p.configuration_value_id);
    }
    function evNode(ev) {
      if (ev === LOST) {
        var lost = text('li', 'lost', 'Events are missing here: the registry deleted them (past its retention or its cap on events) before this page read them.');
        lost.dataset.type = '';
        return lost;
      }
      var d = new Date(ev.timestamp);
      var sum = el('summary', null, [
        text('time', 'mono', d.toLocaleTimeString()),
        text('span', 'type type-' + ev.type.replace(/[^a-z_]/g, '-'), ev.type),
        text('span', 'mono what', evSummary(ev))
      ]);
      var det = el('details', null, [sum, el('pre', 'json', [document.createTextNode(jsonShown(JSON.stringify(ev, null, 2)))])]);
      var li = el('li', null, [det]);
      li.dataset.type = ev.type;
      return li;
    }
    function filterEvents() {
      var t = $('ev-type').value;
      Array.prototype.forEach.call($('ev-list').children, function (li) {
        li.hidden = !!t && li.dataset.type !== t && !li.classList.contains('lost');
      });
    }
    function show(evs) {
      // Only the last FEED_KEEP stay: the others are not made at all (the
      // history at sign-in may hold 10,000).
      if (evs.length > FEED_KEEP) evs = evs.slice(-FEED_KEEP);
      var ol = $('ev-list');
      evs.forEach(function (ev) {
        events.push(ev);
        ol.insertBefore(evNode(ev), ol.firstChild);
      });
      while (events.length > FEED_KEEP) { events.shift(); ol.removeChild(ol.lastChild); }
      $('ev-empty').hidden = events.length > 0;
      filterEvents();
    }
    // lost marks the feed where events were lost: the page lists again
    // and follows from there, and the events between are not shown.
    function lost() { present([LOST]); }
    // present shows evs, or holds them (the last FEED_KEEP) while paused.
    function present(evs) {
      if (paused) { held = held.concat(evs).slice(-FEED_KEEP); return; }
      show(evs);
    }
    // take handles new events from the feed: keeps the known types for the
    // feed view, and takes what they changed. live is false for the
    // history read at sign-in, whose events the services listed already
    // hold, but for those after the list's marker, which the feed followed
    // from there brings again: a service event is applied when the feed
    // brings it, a repeat too (the same state again), and shown once.
    function take(evs, live) {
      var fresh = [];
      var svc = false, changed = false, cfgChanged = false, cfgUnknown = false;
      evs.forEach(function (ev) {
        if (!ev || typeof ev.id !== 'string') return;
        if (live && typeof ev.type === 'string' && ev.type.indexOf('service.') === 0) {
          if (apply(ev)) changed = true; else svc = true;
        }
        if (live && typeof ev.type === 'string' && ev.type.indexOf('configuration_value.') === 0) {
          if (applyConfig(ev)) cfgChanged = true; else cfgUnknown = true;
        }
        if (seen.has(ev.id)) return;
        seen.add(ev.id);
        seenOrder.push(ev.id);
        if (seenOrder.length > SEEN_KEEP) seen.delete(seenOrder.shift());
        if (typeof ev.type !== 'string') return;
        if (ev.type === 'service.join' && ev.payload) joined.set(String(ev.payload.id), ev.timestamp);
        if (EVENT_TYPES.indexOf(ev.type) >= 0) fresh.push(ev);
      });
      if (changed) applied();
      if (svc) relistSoon();
      if (cfgChanged) configApplied();
      if (cfgUnknown) loadConfig().catch(failed);
      if (!fresh.length) return;
      if (paused) {
        heldCount += fresh.length;
        updatePause();
      }
      present(fresh);
    }
    function updatePause() {
      $('ev-pause').textContent = paused ? 'Resume' + (heldCount ? ' (' + heldCount + ' new)' : '') : 'Pause';
      $('ev-pause').setAttribute('aria-pressed', paused ? 'true' : 'false');
      setState(paused ? 'paused' : 'live');
    }
    function setState(s) {
      var e = $('ev-state');
      e.textContent = s;
      e.className = 'state state-' + s;
    }
    this.togglePause = function () {
      paused = !paused;
      if (!paused && held.length) { var h = held; held = []; show(h); }
      heldCount = 0;
      updatePause();
    };
    this.filterEvents = filterEvents;

    // sleep waits ms, or until the page's requests are aborted; its abort
    // listener goes with it (one a feed answer otherwise stayed for the
    // page's life).
    function sleep(ms) {
      return new Promise(function (resolve) {
        var t;
        function done() {
          clearTimeout(t);
          ctrl.signal.removeEventListener('abort', done);
          resolve();
        }
        t = setTimeout(done, ms);
        ctrl.signal.addEventListener('abort', done);
      });
    }

    // follow reads the feed from marker with long-polls (wait=), forever.
    function follow(marker) {
      var backoff = 1000;
      var last = marker;
      var probe = false; // after a failure, ask without waiting: live again at once
      var unwaited = 0; // answers in a row the server did not wait for
      // more: last is a next_marker, the first event of a page not read
      // yet. Asked without wait: a long-poll does not count the event at
      // its marker as new, and would hold that page's events (all of them,
      // if it holds only that one) for the whole wait.
      var more = false;
      if (!paused) setState('live');
      // relist lists again and follows from there: events were lost.
      function relist() {
        more = false;
        lost();
        return loadServices().then(function (m) { last = m; loadConfig().catch(failed); });
      }
      function once() {
        if (stopped) return;
        var q = FEED + (probe || more ? '' : '&wait=' + LONG_POLL) + '&marker=' + encodeURIComponent(last);
        var next = more ? last : null; // the page asked for starts with it
        api(q, ctrl.signal, probe || more ? REQUEST_LIMIT : POLL_LIMIT).then(function (res) {
          backoff = 1000;
          probe = false;
          if (!paused) setState('live');
          var vals = res.body.values || [];
          if (next !== null && (!vals.length || vals[0].id !== next)) {
            // The event cap or retention deleted the next_marker's event,
            // the newest it deleted (no 410 for that one): it is lost, so
            // list again and follow from there, as after a 410.
            return relist();
          }
          take(vals, true);
          var after = res.body.metadata && res.body.metadata.next_marker;
          more = !!after;
          if (after) { last = after; return; }
          if (vals.length) last = vals[vals.length - 1].id;
          // 0s: the server did not wait. A server shutting down says so
          // once (the next request reaches the next server, or this one
          // restarted): ask again soon. A busy one says it again: poll
          // gently.
          if (res.headers.get('X-Registry-Wait') === '0s') return sleep(unwaited++ ? 5000 : 500 + Math.random() * 500);
          unwaited = 0;
          if (vals.length) return sleep(FEED_GATHER);
        }, function (e) {
          if (e instanceof AuthError || stopped || e.name === 'AbortError') { stopped = stopped || e instanceof AuthError; return; }
          if (e.status === 410) return relist(); // markerExpired
          setState('reconnecting');
          probe = true;
          var d = backoff / 2 + Math.random() * backoff / 2;
          backoff = Math.min(backoff * 2, 30000);
          return sleep(d);
        }).then(once, failed);
      }
      once();
    }

    // history shows the last hour's events (the server's default start),
    // its first pages: cut says that it stopped before the end, and the
    // events between are not shown.
    function history() {
      var out = [];
      function page(marker, n) {
        var q = FEED + (marker ? '&marker=' + encodeURIComponent(marker) : '');
        return api(q, ctrl.signal).then(function (res) {
          out = out.concat(res.body.values || []);
          var next = res.body.metadata && res.body.metadata.next_marker;
          return next && n < 9 ? page(next, n + 1) : { events: out, cut: !!next }; // 10 pages at most
        });
      }
      return page('', 0);
    }

    // -- configuration --
    // The configuration is listed at sign-in (and after events were lost)
    // and then takes each change from its event in the feed, as the
    // services do: before, every configuration event read the whole list
    // again, a GET for each 1000 values (20 a second at 20,000 values
    // changing, more than the account's daily limit of 500,000 in a
    // morning), and built the whole tree again (every namespace the user
    // had closed opened again). A value's change is made in its leaf; a
    // value that comes or goes builds the tree again, when it is shown.
    var config = new Map();    // id → value
    var configListed = mirrored('/configuration');
    var cfgLeaves = new Map(); // id → its value's element in the tree
    var cfgStale = true;       // the tree is to be built again when shown
    var cfgClosed = new Set(); // the namespaces the user closed, by path
    var loadConfig = latest(function () {
      return configListed.list().then(function (res) {
        config = new Map();
        res.values.forEach(function (v) { config.set(String(v.id), v.value); });
        res.during.forEach(applyConfig);
        cfgStale = true;
        renderConfig();
        limitsChanged();
      });
    });
    // applyConfig takes a configuration event the feed brought into the
    // values listed, and reports whether it did.
    function applyConfig(ev) {
      var p = ev.payload;
      if (!p || typeof p !== 'object' || typeof p.configuration_value_id !== 'string') return false;
      var id = p.configuration_value_id;
      if (ev.type === 'configuration_value.update') {
        if (typeof p.new_value !== 'string') return false;
        configListed.note(ev);
        if (!config.has(id)) cfgStale = true;
        config.set(id, p.new_value);
        var leaf = cfgLeaves.get(id);
        if (leaf && !cfgStale) {
          clear(leaf);
          leaf.appendChild(shownNodes(p.new_value));
        }
        return true;
      }
      if (ev.type === 'configuration_value.remove') {
        configListed.note(ev);
        if (config.delete(id)) cfgStale = true;
        return true;
      }
      return false;
    }
    // configApplied shows the configuration after events changed it.
    function configApplied() {
      var before = $('cfg-count').textContent;
      renderConfig();
      if ($('cfg-count').textContent !== before) limitsChanged();
    }
    this.showConfig = function () { renderConfig(); };
    // renderConfig shows the count, and builds the tree again if it is
    // stale and shown (a hidden view's tree is built when it is shown).
    function renderConfig() {
      $('cfg-count').textContent = String(config.size);
      $('cfg-empty').hidden = config.size > 0;
      if (!cfgStale || $('view-config').hidden) return;
      cfgStale = false;
      var root = { kids: new Map(), values: [] };
      config.forEach(function (value, id) {
        // Every segment is kept, an empty one ("//", shown as "/") too,
        // and an id that begins with "/" but names no namespace keeps its
        // "/": "/production//web/workers" and "/production/web/workers",
        // or "/feature" and "feature", are different values, and are not
        // shown alike.
        var parts = id.split('/');
        var key = parts.pop();
        if (parts[0] === '') parts.shift();
        if (!parts.length && id.charAt(0) === '/') key = '/' + key;
        var node = root;
        parts.forEach(function (p) {
          if (!node.kids.has(p)) node.kids.set(p, { kids: new Map(), values: [] });
          node = node.kids.get(p);
        });
        node.values.push({ key: key, id: id, value: value });
      });
      var tree = $('cfg-tree');
      // The namespaces the user closed stay closed.
      Array.prototype.forEach.call(tree.querySelectorAll('details'), function (d) {
        if (d.open) cfgClosed.delete(d.dataset.ns); else cfgClosed.add(d.dataset.ns);
      });
      cfgLeaves = new Map();
      function build(node, path) {
        var ul = el('ul');
        Array.from(node.kids.keys()).sort().forEach(function (name) {
          var ns = JSON.stringify(path.concat([name]));
          var d = el('details', null, [text('summary', 'ns', '/' + name), build(node.kids.get(name), path.concat([name]))]);
          d.dataset.ns = ns;
          d.open = !cfgClosed.has(ns);
          ul.appendChild(el('li', null, [d]));
        });
        node.values.sort(function (a, b) { return a.key < b.key ? -1 : 1; }).forEach(function (v) {
          var val = text('span', 'v mono', v.value);
          var li = el('li', 'leaf', [text('span', 'k mono', v.key), val]);
          li.title = shown(v.id);
          cfgLeaves.set(v.id, val);
          ul.appendChild(li);
        });
        return ul;
      }
      clear(tree);
      tree.appendChild(build(root, []));
    }

    // -- limits --
    // The usage shown is counted from the lists: it is refreshed when a
    // list was read again, not when an event only announced a change.
    function limitsChanged() {
      if (!$('view-limits').hidden) self.loadLimits();
    }
    // One read at a time, so that an older answer never lands last.
    var loadLimits = latest(function () {
      return api('/limits', ctrl.signal).then(function (res) {
        var b = res.body || {}, box = $('limits');
        clear(box);
        var used = { service: services.size, configuration_value: Number($('cfg-count').textContent) || 0 };
        var names = { service: 'Services', configuration_value: 'Configuration values' };
        var res = b.resource || {};
        Object.keys(res).sort(function (x, y) { return (names[x] ? 0 : 1) - (names[y] ? 0 : 1) || (x === 'service' ? -1 : y === 'service' ? 1 : 0); }).forEach(function (k) {
          box.appendChild(meter(names[k] || k, used[k], res[k]));
        });
        Object.keys(b.rate || {}).forEach(function (k) {
          var r = b.rate[k];
          box.appendChild(meter('Requests (GET) per ' + r.window, r.used, r.limit));
        });
      });
    });
    this.loadLimits = function () { loadLimits().catch(failed); };
    function meter(label, used, limit) {
      var bar = el('div', 'bar', [el('span')]);
      var pct = limit > 0 ? Math.min(100, 100 * used / limit) : 0;
      bar.firstChild.style.width = pct.toFixed(1) + '%';
      return el('div', 'card meter', [
        text('div', 'label', label),
        text('div', 'figure', used + ' / ' + limit),
        bar
      ]);
    }

    this.sortBy = function (k) {
      if (sortKey === k) sortDir = -sortDir; else { sortKey = k; sortDir = 1; }
      order = null;
      page = 0;
      renderServices();
    };

    // Start: the services (their answer's marker is where the feed is
    // followed from), the last hour's events, the configuration.
    setState('connecting');
    loadServices().then(function (marker) {
      api('/limits', ctrl.signal).then(function (res) { noteClock(res.headers); renderServices(); }).catch(failed);
      loadConfig().catch(failed);
      return history().then(function (h) {
        take(h.events, false);
        if (h.cut) lost();
        $('ev-empty').hidden = events.length > 0;
        follow(marker);
      });
    }).catch(failed);
    timers.push(setInterval(tick, 1000));
  }

  function start() {
    $('who-name').textContent = session.user;
    $('who-tenant').textContent = session.tenant;
    run = new Run();
    route();
    // The token's expiry is known: sign out then, instead of at the next
    // refused request.
    var left = Date.parse(session.expires) - Date.now();
    if (!isNaN(left)) {
      var s = session;
      setTimeout(function () {
        if (session === s) endSession('Your session has expired. Sign in again.');
      }, Math.max(0, Math.min(left, 2147483647)));
    }
  }

  // bind sets the page's controls' handlers (again after endSession).
  function bind() {
    $('signin-form').addEventListener('submit', function (e) {
      e.preventDefault();
      var user = $('signin-user').value.trim();
      var kind = document.querySelector('input[name=kind]:checked').value;
      var err = $('signin-error');
      err.hidden = true;
      $('signin-submit').disabled = true;
      signIn(user, $('signin-secret').value, kind).then(function (s) {
        session = s;
        sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
        $('signin-secret').value = '';
        notice('');
        if (!location.hash || location.hash === '#signin') location.hash = '#services';
        start();
      }, function (e) {
        clear(err);
        err.appendChild(shownNodes(e.message));
        err.hidden = false;
      }).then(function () { $('signin-submit').disabled = false; });
    });
    Array.prototype.forEach.call(document.querySelectorAll('input[name=kind]'), function (r) {
      r.addEventListener('change', function () {
        $('signin-secret-label').textContent = r.value === 'password' ? 'Password' : 'API key';
      });
    });
    $('signout').addEventListener('click', signOut);
    $('svc-filter').addEventListener('input', function () { if (run) run.filterChanged(); });
    $('svc-tag').addEventListener('change', function () { if (run) run.filterChanged(); });
    $('svc-prev').addEventListener('click', function () { if (run) run.turnPage(-1); });
    $('svc-next').addEventListener('click', function () { if (run) run.turnPage(1); });
    Array.prototype.forEach.call(document.querySelectorAll('#svc-table th button'), function (b) {
      b.addEventListener('click', function () { if (run) run.sortBy(b.getAttribute('data-sort')); });
    });
    $('ev-type').addEventListener('change', function () { if (run) run.filterEvents(); });
    $('ev-pause').addEventListener('click', function () { if (run) run.togglePause(); });
  }

  document.addEventListener('DOMContentLoaded', function () {
    pristine = document.body.cloneNode(true);
    bind();
    window.addEventListener('hashchange', route);
    session = loadSession();
    if (session) start(); else showSignIn();
  });
})();
