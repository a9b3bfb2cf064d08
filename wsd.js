/*
 * wsd.js - the JavaScript client of wsd, for browsers and Node.js.
 *
 *   const wsd = new Wsd('http://127.0.0.1:8000', { WebSocket: require('ws') });
 *   wsd.subscribe('session:s1', (event) => console.log(event.type, event.data));
 *   await wsd.publish('session:s1', 'agent_thinking', { step: 1 });
 *
 * A Wsd keeps one link to wsd and each group's position (epoch, seq).
 * Every event passes through its Group: a seq at or below the position is
 * a duplicate and is dropped, the next one is delivered, one further on
 * is a gap.  That one rule makes reconnects, resumes and switches of
 * transport deliver each event exactly once.
 *
 * The link is one WebSocket, opened on the first group's route
 * (/ws/GROUP?since=POS: a route joins its group); the other groups join
 * with "subscribe" and their "since".  A socket that closes (1001, 1013,
 * silence for deadAfter) is opened again after a full-jitter exponential
 * delay, and every group resumes; close 1008 first asks getToken().
 * A browser does not say why an upgrade failed, so wsd is asked over
 * HTTP with the same token: 401/403 asks getToken() once, then stops
 * (state "closed") rather than hammer wsd; no answer means wsd is down;
 * any other answer means something on the way does not upgrade.  After
 * fallbackAfter of those, events come over Server-Sent Events (fetch, a
 * parser here) and publishes go as HTTP POST, from the same positions,
 * while WebSocket is retried in the background; once one opens, SSE is
 * dropped first and the groups go on over the socket.
 *
 * A "history_gap" from wsd, or a seq that jumps ahead, is filled from
 * HTTP history where wsd still keeps the events and reported (onGap) with
 * the exact range either way; the group's later messages wait meanwhile.
 * A new epoch (wsd restarted, the group created again) is reported with
 * onReset and the position starts over.
 *
 * publish() sends at once when a link is up, else waits in a bounded
 * outbox; each has a timeout.  One sent but not answered when its link
 * dropped is rejected "unconfirmed" and never sent again: wsd may have
 * taken it, and a second copy would be a second event.
 *
 * No dependencies; a classic script (globalThis.Wsd) or CommonJS.
 */
(function (root) {
'use strict';

/* ==== Helpers ========================================================= */

const DEFAULTS = {
	token: undefined,	/* JWT: ?token= on upgrades and SSE, Bearer on HTTP */
	getToken: undefined,	/* async () => JWT, asked on 1008 and on 401/403 */
	apiKey: undefined,	/* Bearer for HTTP publish and history */
	WebSocket: undefined,	/* default globalThis.WebSocket */
	fetch: undefined,	/* default globalThis.fetch */
	backoff: { base: 500, cap: 30000 },
	pingInterval: 15000,	/* ms between our pings */
	deadAfter: 45000,	/* ms without a byte: the link is dead */
	openTimeout: 10000,	/* ms for an upgrade, an SSE answer, an HTTP call */
	outbox: 1000,		/* publishes held while no link is up */
	publishTimeout: 10000,	/* ms from publish() to its answer */
	transport: 'auto',	/* 'auto', 'websocket' or 'sse' */
	fallbackAfter: 3,	/* failed upgrades in a row before SSE */
};

/* Why a socket closed, by close code (README "Close codes wsd sends"). */
const CLOSE_REASONS = { 1000: 'closed by wsd', 1001: 'going away',
    1008: 'token expired', 1011: 'internal error', 1013: 'slow consumer' };

const GROUP_RE = /^[A-Za-z0-9._:-]{1,64}$/;

/* An Error carrying wsd's error code, as publish() rejects with. */
function wsdError(code, message) {
	const e = new Error(message || code);
	e.code = code;
	return e;
}

/* subscribe()'s since: "EPOCH:SEQ", or a bare SEQ in the current epoch. */
function parsePos(since) {
	const m = /^(?:([0-9A-Za-z]+):)?(\d+)$/.exec(String(since));
	if (m === null)
		throw new TypeError('since must be "EPOCH:SEQ" or SEQ');
	return { epoch: m[1] || null, seq: Number(m[2]) };
}

/* Full jitter: a delay drawn from [0, min(cap, base * 2^attempt)). */
function backoffDelay(backoff, attempt) {
	return Math.random() * Math.min(backoff.cap, backoff.base * 2 ** attempt);
}

/* An event is told from wsd's answers by having both seq and timestamp
 * (no answer has both), never by its type: a publisher may name an event
 * "subscribed" or "error". */
function isEvent(m) {
	return typeof m.seq === 'number' && m.timestamp !== undefined &&
	    typeof m.group === 'string';
}

/* Call fn(arg); a throw is rethrown later, so the caller's state and the
 * other listeners are not left half done. */
function call(fn, arg) {
	try {
		fn(arg);
	} catch (e) {
		setTimeout(() => { throw e; });
	}
}

/*
 * A text/event-stream parser (WHATWG HTML, "Server-sent events"): feed it
 * text as it arrives; it calls onData with each record's "data:" lines
 * joined with LF.  Lines end with CR LF, LF or CR; a line starting with
 * ":" is a comment (wsd's heartbeat).  "id:" is not needed: every event
 * carries its group and seq, and the positions are kept here.
 */
function sseParser(onData) {
	let buf = '', data = [];
	return (text) => {
		buf += text;
		for (;;) {
			const m = /\r\n|\r|\n/.exec(buf);
			/* A CR at the end may be the first half of a CR LF. */
			if (m === null || (m[0] === '\r' && m.index === buf.length - 1))
				return;
			const line = buf.slice(0, m.index);
			buf = buf.slice(m.index + m[0].length);
			if (line === '') {
				if (data.length > 0)
					onData(data.join('\n'));
				data = [];
			} else if (line.startsWith('data:'))
				data.push(line.slice(line[5] === ' ' ? 6 : 5));
		}
	};
}

/* ==== Group: one group's position and subscribers ===================== */

class Group {
	constructor(name, start) {
		this.name = name;
		this.epoch = start ? start.epoch : null;	/* null: not known yet */
		this.seq = start ? start.seq : 0;	/* the last seq delivered */
		this.resume = start !== null;		/* since was given */
		this.subs = new Set();
		this.held = [];		/* messages waiting while a gap is filled */
		this.filling = false;
	}

	/* Where to resume: "EPOCH:SEQ", a bare "SEQ", or null (live). */
	since() {
		if (this.epoch !== null) return this.epoch + ':' + this.seq;
		return this.resume ? String(this.seq) : null;
	}

	position() {
		return this.epoch === null ? null : { epoch: this.epoch, seq: this.seq };
	}

	each(cb, arg) {
		for (const sub of this.subs)
			if (typeof sub[cb] === 'function')
				call(sub[cb], arg);
	}

	deliver(event) {
		this.seq = event.seq;
		this.each('onEvent', event);
	}
}

/* ==== Wsd: the public surface ========================================= */

class Wsd {
	constructor(base, options = {}) {
		const o = this.opts = { ...DEFAULTS, ...options,
		    backoff: { ...DEFAULTS.backoff, ...options.backoff } };

		/* http(s):// for HTTP; the WebSocket URL is derived from it. */
		this.base = String(base || (root.location && root.location.origin) ||
		    '').replace(/\/+$/, '').replace(/^ws(s?):/, 'http$1:');
		if (!/^https?:\/\/./.test(this.base))
			throw new TypeError('base must be an http(s):// URL');
		this.WebSocket = o.WebSocket || root.WebSocket;
		this.fetch = o.fetch || (root.fetch && root.fetch.bind(root));
		if (!this.WebSocket && o.transport !== 'sse')
			throw new TypeError('no WebSocket: pass options.WebSocket ' +
			    '(in Node 20, require("ws"))');
		if (!this.fetch)
			throw new TypeError('no fetch: pass options.fetch');
		this.token = o.token;
		this.groups = new Map();	/* name -> Group, in subscribe order */
		this.listeners = { state: new Set(), error: new Set() };
		this.outbox = [];		/* publishes waiting for a link */
		this.pending = new Map();	/* id -> publish sent on this.ws */
		this.posting = new Set();	/* publishes sent as HTTP POST */
		this.nextId = 1;
		this.mode = o.transport === 'sse' ? 'sse' : 'websocket';
		this.ws = null;			/* the socket open or opening */
		this.wsOpen = false;
		this.sse = null;		/* the SSE link, in fallback */
		this.timer = null;		/* the next WebSocket attempt */
		this.sseTimer = null;		/* the next SSE attempt */
		this.liveTimer = null;
		this.attempt = 0;		/* WebSocket failures in a row */
		this.sseAttempt = 0;
		this.upgradeFails = 0;		/* ...while HTTP answered */
		this.noSse = false;		/* wsd answered /sse with 404 */
		this.tokenAsked = false;	/* getToken() asked since the last open */
		this.stopped = false;		/* refused: waits for retryNow() */
		this.closed = false;		/* close() was called */
		this.started = false;
		this.current = { state: 'connecting', transport: this.mode };
		/* A browser back online retries at once, whatever the delay. */
		if (typeof root.addEventListener === 'function') {
			const off = root.removeEventListener, fn = () => this.retryNow();
			root.addEventListener('online', fn);
			this.offOnline = () => off.call(root, 'online', fn);
		}
	}

	/* The last state emitted: {state, transport, reason?, attempt?, delay?}. */
	get state() {
		return this.current;
	}

	/* 'state' and 'error' events. */
	on(name, fn) {
		this.listeners[name].add(fn);
		return this;
	}

	off(name, fn) {
		if (this.listeners[name])
			this.listeners[name].delete(fn);
		return this;
	}

	emit(name, arg) {
		for (const fn of this.listeners[name])
			call(fn, arg);
	}

	setState(state, extra) {
		this.current = { state, transport: this.mode, ...extra };
		this.emit('state', this.current);
	}

	/*
	 * onEvent(envelope) once for each of group's events, in seq order.  A
	 * second subscribe to a group shares its stream from where it is
	 * (its since is not used).
	 */
	subscribe(group, onEvent, { since, onGap, onReset } = {}) {
		if (this.closed)
			throw new Error('this Wsd is closed');
		if (!GROUP_RE.test(group))
			throw new TypeError('group must be 1-64 bytes of [A-Za-z0-9._:-]');
		let g = this.groups.get(group);
		const fresh = g === undefined;
		if (fresh) {
			g = new Group(group, since === undefined ? null : parsePos(since));
			this.groups.set(group, g);
		}
		const sub = { onEvent, onGap, onReset,
		    unsubscribe: () => this.unsubscribe(g, sub) };
		Object.defineProperty(sub, 'position',
		    { get: () => g.position(), enumerable: true });
		g.subs.add(sub);
		if (fresh)
			this.groupsChanged(g, 'subscribe');
		return sub;
	}

	unsubscribe(g, sub) {
		g.subs.delete(sub);
		if (g.subs.size > 0 || this.groups.get(g.name) !== g) return;
		this.groups.delete(g.name);
		this.groupsChanged(g, 'unsubscribe');
	}

	/* Tell the link in use that a group came or went. */
	groupsChanged(g, type) {
		if (this.wsOpen)
			this.send(type === 'subscribe' ? this.subscribeMsg(g) :
			    { type, group: g.name });
		else if (this.sse !== null)
			this.restartSseSoon();
		this.startSoon();
	}

	/* Resolves to {seq, delivered}; rejects with an Error whose .code is
	 * wsd's error code, or timeout, outbox_full, unconfirmed, closed. */
	publish(group, type, data) {
		return new Promise((resolve, reject) => {
			const p = { group, type, data, resolve, reject, id: 0,
			    ctl: null, done: false };

			p.timer = setTimeout(() => this.settle(p, wsdError('timeout',
			    'no answer from wsd in time; it may or may not have ' +
			    'been published')), this.opts.publishTimeout);
			if (this.closed || this.stopped)
				this.settle(p, wsdError(this.closed ? 'closed' :
				    this.current.reason, 'the client is stopped'));
			else if (this.linkUp())
				this.sendPublish(p);
			else if (this.outbox.length >= this.opts.outbox)
				this.settle(p, wsdError('outbox_full',
				    `${this.opts.outbox} publishes already wait`));
			else {
				this.outbox.push(p);
				this.startSoon();
			}
		});
	}

	/* Credentials given later (a key typed into a page): used from the
	 * next call or connection on; undefined forgets them. */
	setApiKey(key) {
		this.opts.apiKey = key;
	}

	setToken(token) {
		this.token = token;
	}

	/* Reconnect now: a "retry now" button, or the browser back online. */
	retryNow() {
		if (this.closed) return;
		if (this.stopped) {
			this.stopped = false;
			this.setState('connecting');
		}
		this.attempt = this.sseAttempt = 0;
		this.tokenAsked = false;
		if (this.mode === 'sse' && this.sse === null) {
			clearTimeout(this.sseTimer);
			this.startSse();
		}
		if (this.ws === null) {
			clearTimeout(this.timer);
			this.connectWs();
		}
	}

	close() {
		if (this.closed) return;
		this.closed = true;
		this.halt();
		this.fail([...this.pending.values(), ...this.posting], 'closed',
		    'the client was closed');
		for (const g of this.groups.values())
			g.subs.clear();		/* a gap being filled delivers nothing */
		if (this.offOnline)
			this.offOnline();
		this.setState('closed', { reason: 'closed' });
	}

	/* ==== Starting and stopping ======================================= */

	/* Start a link at the end of this turn if there is something to do,
	 * so that groups subscribed together share one route. */
	startSoon() {
		if (this.startQueued) return;
		this.startQueued = true;
		Promise.resolve().then(() => {
			this.startQueued = false;
			if (this.closed || this.stopped || this.started ||
			    (this.groups.size === 0 && this.outbox.length === 0))
				return;
			this.started = true;
			this.setState('connecting');
			if (this.mode === 'sse')
				this.startSse();
			else
				this.connectWs();
		});
	}

	/* Refused: stop until retryNow(), since retrying cannot help. */
	stop(code, message) {
		this.stopped = true;
		this.halt();
		this.emit('error', { code, message });
		this.setState('closed', { reason: code });
	}

	/* End both links and every timer; the outbox is refused. */
	halt() {
		clearTimeout(this.timer);
		this.timer = null;
		clearInterval(this.liveTimer);
		this.liveTimer = null;
		this.dropWs(1000);
		this.stopSse();
		this.fail(this.outbox, this.closed ? 'closed' : this.stopCode,
		    'the client stopped before it could publish');
	}

	/* ==== The WebSocket link ========================================== */

	/* The group to open the socket on: the first subscribed, else the
	 * first one published to (left at once after the open). */
	routeGroup() {
		for (const name of this.groups.keys())
			return name;
		const p = this.outbox.find((q) => GROUP_RE.test(q.group));
		return p ? p.group : null;
	}

	connectWs() {
		const route = this.routeGroup();
		this.timer = null;
		if (this.closed || this.stopped || this.opts.transport === 'sse' ||
		    this.ws !== null || route === null)
			return;
		const g = this.groups.get(route), q = [];
		if (g && g.since() !== null)
			q.push('since=' + encodeURIComponent(g.since()));
		if (this.token)
			q.push('token=' + encodeURIComponent(this.token));
		let ws;
		try {
			ws = new this.WebSocket(this.base.replace(/^http/, 'ws') + '/ws/' +
			    route + (q.length ? '?' + q.join('&') : ''));
		} catch (e) {
			this.openFailed(route, e.message);
			return;
		}
		this.ws = ws;
		this.wsRoute = route;
		this.wsError = '';
		ws.onopen = () => this.wsOpened(ws);
		ws.onmessage = (m) => {
			if (ws === this.ws && typeof m.data === 'string') {
				this.lastRx = Date.now();
				this.message(m.data);
			}
		};
		/* An error before the open is the failed open: some WebSockets
		 * (Node 20's undici) fire no close event after it. */
		ws.onerror = (e) => {
			if (ws === this.ws)
				this.wsError = (e && e.message) || 'error';
			if (ws === this.ws && !this.wsOpen)
				this.wsClosed(ws, 1006);
		};
		ws.onclose = (e) => this.wsClosed(ws, e.code);
		this.openTimer = setTimeout(() => this.wsClosed(ws, 0, 'open timeout'),
		    this.opts.openTimeout);
	}

	wsOpened(ws) {
		if (ws !== this.ws) return;
		clearTimeout(this.openTimer);
		this.wsOpen = true;
		this.attempt = this.upgradeFails = 0;
		this.tokenAsked = false;
		/* Back from SSE: drop it before anything arrives here, so each
		 * group goes on from exactly where SSE left it. */
		this.stopSse();
		this.mode = 'websocket';
		for (const g of this.groups.values())
			if (g.name !== this.wsRoute)
				this.send(this.subscribeMsg(g));
		if (!this.groups.has(this.wsRoute))
			this.send({ type: 'unsubscribe', group: this.wsRoute });
		this.lastRx = Date.now();
		this.lastPing = 0;
		this.startLiveness();
		this.flushOutbox();
		this.setState('open');
	}

	/* The id names the group, so that a refused subscribe can be told. */
	subscribeMsg(g) {
		return { type: 'subscribe', group: g.name, id: 'subscribe:' + g.name,
		    since: g.since() === null ? undefined : g.since() };
	}

	send(msg) {
		try {
			this.ws.send(JSON.stringify(msg));
		} catch (e) {
			/* Closing: its close event follows. */
		}
	}

	/*
	 * The socket closed (code from wsd), or we gave up on it (why).
	 * Publishes sent on it are unconfirmed; a socket that never opened is
	 * diagnosed; one that was open is opened again.
	 */
	wsClosed(ws, code, why) {
		if (ws !== this.ws) return;
		const wasOpen = this.wsOpen;
		this.dropWs(why ? undefined : code);
		this.fail([...this.pending.values()], 'unconfirmed', 'the connection ' +
		    'closed before wsd answered: it may or may not have been published');
		if (this.closed || this.stopped) return;
		if (!wasOpen)
			this.openFailed(this.wsRoute, why || this.wsError);
		else if (code === 1008 && this.opts.getToken)
			this.newToken().then(() => this.retryWs('token expired'));
		else
			this.retryWs(why || CLOSE_REASONS[code] || 'connection lost');
	}

	/* Forget the socket and end it (at once where the library can). */
	dropWs(code) {
		const ws = this.ws;
		clearTimeout(this.openTimer);
		this.ws = null;
		this.wsOpen = false;
		try {
			if (ws !== null && code === undefined && ws.terminate)
				ws.terminate();
			else if (ws !== null)
				ws.close(code === 1000 ? 1000 : undefined);
		} catch (e) {
			/* already closing */
		}
	}

	/* The next WebSocket attempt after a full-jitter delay.  While SSE
	 * carries the events it is a background retry, not a state. */
	retryWs(reason) {
		if (this.closed || this.stopped || this.ws !== null) return;
		const delay = backoffDelay(this.opts.backoff, this.attempt++);
		clearTimeout(this.timer);
		this.timer = setTimeout(() => this.connectWs(), delay);
		if (this.mode === 'websocket')
			this.setState('reconnecting', { reason, attempt: this.attempt,
			    delay: Math.round(delay) });
	}

	/* Liveness: a link silent for deadAfter (a network that dropped
	 * without a FIN, a wsd that stopped) is replaced.  Our pings make a
	 * healthy idle socket answer; wsd's SSE heartbeat does the same. */
	startLiveness() {
		const o = this.opts;
		if (this.liveTimer === null)
			this.liveTimer = setInterval(() => this.checkLive(),
			    Math.max(10, Math.min(o.pingInterval, o.deadAfter / 4)));
	}

	checkLive() {
		const now = Date.now(), o = this.opts;
		if (this.wsOpen && now - this.lastRx >= o.deadAfter)
			this.wsClosed(this.ws, 0, 'dead');
		else if (this.wsOpen && now - this.lastPing >= o.pingInterval) {
			this.lastPing = now;
			this.send({ type: 'ping', id: this.nextId++ });
		}
		if (this.sse !== null && this.sse.open &&
		    now - this.sse.lastRx >= o.deadAfter)
			this.sseEnded(this.sse, 'dead');
	}

	/* ==== A failed open: refused, unreachable, or blocked ============= */

	/*
	 * An upgrade failed.  A browser does not say why, so wsd is asked
	 * over HTTP with the same token: 401/403 is a refused token; no
	 * answer means wsd is down (retry); any other answer means wsd is up
	 * and something on the way does not upgrade (fall back to SSE).
	 */
	async openFailed(route, why) {
		if (this.mode === 'sse') {
			this.retryWs();		/* SSE carries the events meanwhile */
			return;
		}
		const status = await this.probe(route);
		if (this.closed || this.stopped || this.ws !== null ||
		    this.timer !== null || this.mode === 'sse')
			return;		/* retryNow() or close() meanwhile */
		if (status === 401 || status === 403) {
			this.refused(status, 'upgrade');
			return;
		}
		/* Node's ws names the HTTP answer: one that is not 101 from a
		 * wsd that answers HTTP comes from a proxy that does not upgrade. */
		const answered = /Unexpected server response/.test(why);
		if (status !== 0 && this.opts.transport === 'auto' && !this.noSse &&
		    (++this.upgradeFails >= this.opts.fallbackAfter || answered))
			this.startSse();
		this.retryWs(status === 0 ? 'unreachable' : 'upgrade failed');
	}

	/* The HTTP status of a history read of route, or 0 without one. */
	async probe(route) {
		try {
			return (await this.http('GET', '/api/groups/' +
			    encodeURIComponent(route) + '/events?limit=0',
			    this.token || this.opts.apiKey)).status;
		} catch (e) {
			return 0;
		}
	}

	/* wsd refused our token: ask getToken() once, else stop. */
	async refused(status, what) {
		if (this.opts.getToken && !this.tokenAsked) {
			this.tokenAsked = true;
			await this.newToken();
			if (this.mode === 'sse')
				this.sseTimer = setTimeout(() => this.startSse(), 0);
			else
				this.timer = setTimeout(() => this.connectWs(), 0);
			return;
		}
		this.stopCode = status === 401 ? 'unauthorized' : 'forbidden';
		this.stop(this.stopCode, `wsd refused the ${what} (HTTP ${status})`);
	}

	async newToken() {
		try {
			this.token = await this.opts.getToken();
		} catch (e) {
			this.emit('error', { code: 'get_token', message: String(e) });
		}
	}

	/* ==== The SSE link (fallback) ===================================== */

	/*
	 * GET /sse?groups=G1,G2&since=G1=EPOCH:SEQ,... read with fetch: one
	 * code path for browsers and Node, and unlike EventSource it resumes
	 * from our positions.  With no group there is nothing to read, and
	 * publishing over HTTP needs no stream.
	 */
	startSse() {
		this.sseTimer = null;
		if (this.closed || this.stopped || this.sse !== null) return;
		this.mode = 'sse';
		const link = { ctl: new AbortController(), open: false,
		    lastRx: Date.now(), status: 0 };
		this.sse = link;
		if (this.groups.size === 0) {
			this.sseOpened(link);
			return;
		}
		const groups = [...this.groups.values()];
		const q = ['groups=' + groups.map((g) => g.name).join(',')];
		const since = groups.filter((g) => g.since() !== null)
		    .map((g) => g.name + '=' + g.since());
		if (since.length > 0)
			q.push('since=' + since.join(','));
		if (this.token)
			q.push('token=' + encodeURIComponent(this.token));
		const openTimer = setTimeout(() => link.ctl.abort(),
		    this.opts.openTimeout);
		this.fetch(this.base + '/sse?' + q.join('&'), { signal: link.ctl.signal,
		    headers: { Accept: 'text/event-stream' } })
		    .then((res) => {
			clearTimeout(openTimer);
			link.status = res.status;
			if (!res.ok || link !== this.sse)
				throw new Error(`HTTP ${res.status}`);
			this.sseOpened(link);
			return this.readSse(link, res.body);
		    })
		    .then(() => this.sseEnded(link, 'stream ended'),
			(e) => this.sseEnded(link, e.message));
	}

	async readSse(link, body) {
		const reader = body.getReader(), decoder = new TextDecoder();
		const parse = sseParser((data) => {
			if (link === this.sse)
				this.message(data);
		});

		while (link === this.sse) {
			const { done, value } = await reader.read();
			if (done) return;
			link.lastRx = Date.now();
			parse(decoder.decode(value, { stream: true }));
		}
		reader.cancel().catch(() => {});
	}

	sseOpened(link) {
		link.open = true;
		this.sseAttempt = 0;
		this.tokenAsked = false;
		this.startLiveness();
		this.flushOutbox();
		this.setState('fallback');
		/* WebSocket is retried in the background from here on. */
		if (this.opts.transport === 'auto' && this.ws === null &&
		    this.timer === null)
			this.retryWs();
	}

	/* The stream ended or failed: open it again, unless WebSocket took
	 * over (then link is no longer this.sse). */
	sseEnded(link, why) {
		if (link !== this.sse) return;
		this.stopSse();
		if (this.closed || this.stopped) return;
		if (link.status === 401 || link.status === 403) {
			this.refused(link.status, 'event stream');
		} else if (link.status === 404 && this.opts.transport === 'auto') {
			/* A wsd without /sse: only WebSocket can work. */
			this.noSse = true;
			this.mode = 'websocket';
			this.setState('reconnecting', { reason: 'no event stream' });
		} else {
			const delay = backoffDelay(this.opts.backoff, this.sseAttempt++);
			this.sseTimer = setTimeout(() => this.startSse(), delay);
			this.setState('reconnecting', { reason: why,
			    attempt: this.sseAttempt, delay: Math.round(delay) });
		}
	}

	stopSse() {
		const link = this.sse;
		clearTimeout(this.sseTimer);
		this.sseTimer = null;
		this.sse = null;
		if (link !== null)
			link.ctl.abort();
	}

	/* The groups changed: one new stream at the end of this turn, from
	 * the positions reached, so nothing is lost or seen twice. */
	restartSseSoon() {
		if (this.sseRestart) return;
		this.sseRestart = true;
		Promise.resolve().then(() => {
			this.sseRestart = false;
			if (this.sse !== null && this.mode === 'sse') {
				this.stopSse();
				this.startSse();
			}
		});
	}

	/* ==== Messages, from either link ================================== */

	message(text) {
		let m;
		try {
			m = JSON.parse(text);
		} catch (e) {
			return;
		}
		if (m === null || typeof m !== 'object') return;
		if (isEvent(m) || m.type === 'subscribed' ||
		    (m.type === 'error' && m.code === 'history_gap'))
			this.toGroup(m);
		else if (m.type === 'published' ||
		    (m.type === 'error' && typeof m.id === 'number'))
			this.answered(m);
		else if (m.type === 'error')
			this.serverError(m);
		/* pong, unsubscribed: the bytes were the point (liveness). */
	}

	/* An error not about a publish.  A refused subscribe drops its group:
	 * reconnecting would not change the answer. */
	serverError(m) {
		const name = typeof m.id === 'string' && m.id.startsWith('subscribe:') ?
		    m.id.slice(10) : undefined;
		if (name !== undefined && this.groups.delete(name) && this.sse !== null)
			this.restartSseSoon();
		this.emit('error', { code: m.code, message: m.message, group: name });
	}

	/* A group's messages are taken one at a time, in order; while a gap
	 * is being filled they wait. */
	toGroup(m) {
		const g = this.groups.get(m.group);
		if (g === undefined)
			return;		/* a route left, or unsubscribed */
		if (g.filling)
			g.held.push(m);
		else
			this.apply(g, m);
	}

	apply(g, m) {
		if (!isEvent(m))
			this.streamAt(g, m);
		else if (g.epoch === null || m.seq <= g.seq)
			return;		/* a duplicate: replays overlap */
		else if (m.seq > g.seq + 1) {
			/* Lost on the way: fetch the missing ones first. */
			g.held.unshift(m);
			this.fill(g, g.seq + 1, m.seq - 1);
		} else
			g.deliver(m);
	}

	/*
	 * "subscribed" or "history_gap": where wsd's stream of g stands.  The
	 * first subscribed sets the epoch (and, when live, the seq).  Another
	 * epoch, or a position past the stream's end, is a new stream.  A
	 * history_gap names the oldest seq wsd still has: everything between
	 * our position and it is missing.
	 */
	streamAt(g, m) {
		if (typeof m.epoch !== 'string') return;
		if (g.epoch === null) {
			g.epoch = m.epoch;
			if (!g.resume)
				g.seq = m.seq;
		} else if (m.epoch !== g.epoch || m.seq < g.seq) {
			const oldEpoch = g.epoch;
			g.epoch = m.epoch;
			g.seq = 0;
			g.each('onReset', { group: g.name, oldEpoch, epoch: m.epoch });
		}
		if (m.type === 'error' && m.oldest > g.seq + 1)
			this.fill(g, g.seq + 1, m.oldest - 1);
	}

	/* ==== Gaps: fill from HTTP history, else report =================== */

	/*
	 * Seqs from..to of g's epoch are missing.  Read them from HTTP
	 * history, page by page; deliver what is kept, in order; report each
	 * run filled or lost as one range.  Then the messages held meanwhile
	 * go on.
	 */
	async fill(g, from, to) {
		const epoch = g.epoch;
		let next = from, filledFrom = 0;
		/* A range reported lost is passed: the position goes beyond it. */
		const report = (a, b, filled) => {
			g.seq = Math.max(g.seq, b);
			g.each('onGap', { group: g.name, epoch, from: a, to: b, filled });
		};
		const flushFilled = () => {
			if (filledFrom > 0)
				report(filledFrom, next - 1, true);
			filledFrom = 0;
		};

		g.filling = true;
		try {
			for (;;) {
				const page = await this.history(g.name, epoch, next - 1,
				    Math.min(1000, to - next + 1));
				const was = next;
				if (page.epoch !== epoch)
					break;		/* a new stream: a reset follows */
				for (const ev of page.events.filter((e) =>
				    e.seq >= next && e.seq <= to)) {
					if (ev.seq > next) {
						flushFilled();
						report(next, ev.seq - 1, false);
					}
					filledFrom = filledFrom || ev.seq;
					g.deliver(ev);
					next = ev.seq + 1;
				}
				/* No progress: what is left of the range is no
				 * longer kept (the page starts past it). */
				if (next > to || !page.more || next === was)
					break;
			}
		} catch (e) {
			/* wsd not reachable: what is missing is reported below. */
		}
		flushFilled();
		if (next <= to)
			report(next, to, false);
		g.filling = false;
		while (!g.filling && g.held.length > 0)
			this.apply(g, g.held.shift());
	}

	async history(name, epoch, seq, limit) {
		const res = await this.http('GET', '/api/groups/' +
		    encodeURIComponent(name) + `/events?since=${epoch}:${seq}` +
		    `&limit=${limit}`, this.token || this.opts.apiKey);
		if (res.status !== 200)
			throw new Error(`HTTP ${res.status}`);
		return res.json();
	}

	/* ==== Publishing ================================================== */

	linkUp() {
		return this.wsOpen || (this.mode === 'sse' && this.sse !== null &&
		    this.sse.open);
	}

	sendPublish(p) {
		if (!this.wsOpen) {
			this.postPublish(p);
			return;
		}
		p.id = this.nextId++;
		this.pending.set(p.id, p);
		this.send({ type: 'publish', group: p.group, event: p.type,
		    data: p.data, id: p.id });
	}

	/* Over HTTP, while SSE carries the events. */
	async postPublish(p) {
		let res, body;
		p.ctl = new AbortController();
		this.posting.add(p);
		try {
			res = await this.http('POST', '/api/groups/' +
			    encodeURIComponent(p.group) + '/events', this.opts.apiKey ||
			    this.token, { type: p.type, data: p.data }, p.ctl.signal);
			body = await res.json();
		} catch (e) {
			this.settle(p, wsdError('unconfirmed', 'the request failed: ' +
			    'it may or may not have been published'));
			return;
		}
		if (res.status === 202)
			this.settle(p, null, { seq: body.seq, delivered: body.delivered });
		else
			this.settle(p, wsdError(body.error || 'http_' + res.status,
			    body.message));
	}

	/* The answer to a publish sent on the socket. */
	answered(m) {
		const p = this.pending.get(m.id);
		if (p === undefined)
			return;		/* a ping's id, or it timed out */
		if (m.type === 'published')
			this.settle(p, null, { seq: m.seq, delivered: m.delivered });
		else
			this.settle(p, wsdError(m.code, m.message));
	}

	/* Resolve or reject p once, wherever it waits. */
	settle(p, err, result) {
		if (p.done) return;
		p.done = true;
		clearTimeout(p.timer);
		this.pending.delete(p.id);
		this.posting.delete(p);
		const i = this.outbox.indexOf(p);
		if (i >= 0)
			this.outbox.splice(i, 1);
		if (err === null) {
			p.resolve(result);
			return;
		}
		if (p.ctl !== null)
			p.ctl.abort();
		p.reject(err);
	}

	flushOutbox() {
		const waiting = this.outbox;
		this.outbox = [];
		for (const p of waiting)
			this.sendPublish(p);
	}

	fail(list, code, message) {
		for (const p of [...list])
			this.settle(p, wsdError(code, message));
	}

	/* ==== HTTP ======================================================== */

	/* One call to wsd, bounded by signal or else openTimeout. */
	http(method, path, bearer, body, signal) {
		const headers = {};
		if (bearer)
			headers.Authorization = 'Bearer ' + bearer;
		if (body !== undefined)
			headers['Content-Type'] = 'application/json';
		return this.fetch(this.base + path, { method, headers,
		    body: body === undefined ? undefined : JSON.stringify(body),
		    signal: signal || AbortSignal.timeout(this.opts.openTimeout) });
	}
}

if (typeof module === 'object' && module.exports)
	module.exports = { Wsd };
else
	root.Wsd = Wsd;
})(typeof globalThis !== 'undefined' ? globalThis : this);
