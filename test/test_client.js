/*
 * test_client.js - wsd.js, the JavaScript client, against the real wsd.
 *
 * Each section starts its own wsd on a free loopback port and drives one
 * or more Wsd clients.  Where the network
 * must misbehave, the client talks to wsd through Proxy, a small TCP relay
 * written here that can refuse upgrades (answering 200 or 403 as a proxy
 * that does not speak WebSocket would), be down, cut every connection,
 * send a close frame of its choice at a frame boundary, or lose one
 * frame.  Events are published over HTTP straight to wsd, so each one
 * counts as acknowledged when its 202 arrives; "exactly once" means every
 * acknowledged seq reached the subscriber, none twice, in order.
 * Conditions are waited for with until() and generous deadlines; the one
 * "nothing more happens" check (no hammering after a 401) watches for
 * twenty backoff periods.
 *
 * The sections run twice: with the `ws` package, then in a child node
 * with Node's own WebSocket (undici, built in from Node 22; Node 20 needs
 * --experimental-websocket), whose results are counted here.  Last, the
 * client runs in headless Chromium as a classic script: WebSocket, SSE,
 * a restart, and a refused token, which a browser cannot see in the
 * failed upgrade itself.
 */
'use strict';
const { spawn } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const net = require('net');
const path = require('path');
const { CHROMIUM, DEADLINE, check, done, openBrowser, request, sleep,
    startServer, until } = require('./wsdtest');
const { Wsd } = require(path.join(__dirname, '..', 'wsd.js'));

/* WSD_TEST_WEBSOCKET=global: the child run on Node's own WebSocket. */
const BUILTIN = process.env.WSD_TEST_WEBSOCKET === 'global';
const WebSocket = BUILTIN ? globalThis.WebSocket : require('ws');

const SECRET = 'test-client-secret-0123456789abcdef';	/* >= 32 bytes */

/* ==== Helpers ========================================================= */

/* A client with a quick backoff that records its states and errors. */
function client(port, opts = {}) {
	const w = new Wsd(`http://127.0.0.1:${port}`, { WebSocket,
	    backoff: { base: 100, cap: 1000 }, ...opts });
	w.states = [];
	w.errors = [];
	w.on('state', (s) => w.states.push(s));
	w.on('error', (e) => w.errors.push(e));
	return w;
}

/* How many times w has reached state (with transport, if given). */
function count(w, state, transport) {
	return w.states.filter((s) => s.state === state &&
	    (!transport || s.transport === transport)).length;
}

const reached = (w, state, n = 1, transport) =>
    until(() => count(w, state, transport) >= n, DEADLINE);

/* Subscribe to group, keeping what arrives. */
function collect(w, group, opts = {}) {
	const c = { seqs: [], events: [], gaps: [], resets: [] };
	c.sub = w.subscribe(group, (e) => {
		c.seqs.push(e.seq);
		c.events.push(e);
	}, { ...opts, onGap: (g) => c.gaps.push(g),
	    onReset: (r) => c.resets.push(r) });
	return c;
}

/* Every acknowledged seq arrived, none twice, in increasing order. */
function exactlyOnce(c, acked) {
	const seen = new Set(c.seqs);
	const missing = acked.filter((s) => !seen.has(s));
	const ordered = c.seqs.every((s, i) => i === 0 || s > c.seqs[i - 1]);
	return { ok: missing.length === 0 && ordered && seen.size === c.seqs.length,
	    detail: { missing: missing.slice(0, 20), ordered,
	    duplicates: c.seqs.length - seen.size, got: c.seqs.length,
	    acked: acked.length } };
}

/* One HTTP call with extra headers: { status, body }. */
function call(port, method, urlPath, body, headers = {}) {
	return new Promise((resolve, reject) => {
		const data = body === undefined ? '' : JSON.stringify(body);
		const req = http.request({ host: '127.0.0.1', port, method,
		    path: urlPath, headers: { ...headers, 'Content-Length':
		    Buffer.byteLength(data) } }, (res) => {
			let text = '';
			res.setEncoding('utf8');
			res.on('data', (c) => { text += c; });
			res.on('end', () => resolve({ status: res.statusCode,
			    body: text }));
		});
		req.setTimeout(10000, () => req.destroy(new Error('timeout')));
		req.on('error', reject);
		req.end(data);
	});
}

/* One HTTP publish to wsd (bearer: a key or token); its seq once
 * acknowledged (202). */
async function publish(port, group, type = 'tick', data = {}, bearer) {
	const r = await call(port, 'POST', `/api/groups/${group}/events`,
	    { type, data }, bearer ? { Authorization: 'Bearer ' + bearer } : {});
	if (r.status !== 202)
		throw new Error(`publish ${group}: ${r.status} ${r.body}`);
	return JSON.parse(r.body).seq;
}

/* Publish to each group in turn until stop(); acked[group] = seqs. */
function publisher(port, groups, pause = 5, bearer = undefined) {
	const acked = Object.fromEntries(groups.map((g) => [g, []]));
	let stopping = false, n = 0;
	const loop = (async () => {
		while (!stopping) {
			for (const g of groups)
				acked[g].push(await publish(port, g, 'tick', { n: n++ },
				    bearer));
			await sleep(pause);
		}
	})();
	return { acked, async stop() {
		stopping = true;
		await loop;
	} };
}

async function groupEpoch(port, group) {
	const r = await request(port, 'GET', `/api/groups/${group}/events?limit=0`);
	return JSON.parse(r.body).epoch;
}

/* A Prometheus sample of /metrics, e.g. 'wsd_websockets'. */
async function metric(port, name) {
	const r = await request(port, 'GET', '/metrics');
	const line = r.body.split('\n').find((l) => l.startsWith(name + ' '));
	return line ? Number(line.slice(name.length + 1)) : NaN;
}

/* An HS256 JWT (RFC 7519) signed with secret. */
function jwt(secret, claims) {
	const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
	const head = part({ alg: 'HS256', typ: 'JWT' }) + '.' + part(claims);
	return head + '.' + crypto.createHmac('sha256', secret).update(head)
	    .digest('base64url');
}

/*
 * Cuts wsd's side of an upgraded connection into whole WebSocket frames
 * (RFC 6455 §5.2; server frames are unmasked): onFrame(bytes, text) with
 * text for text frames.  The HTTP head comes first as one piece; after an
 * answer other than 101, everything passes as it comes.
 */
function frameCutter(onFrame) {
	let buf = Buffer.alloc(0), state = 'head';
	return (d) => {
		buf = Buffer.concat([buf, d]);
		if (state === 'head') {
			const i = buf.indexOf('\r\n\r\n');
			if (i < 0)
				return;
			state = / 101 /.test(buf.subarray(0, 16).toString()) ?
			    'frames' : 'raw';
			onFrame(buf.subarray(0, i + 4), null);
			buf = buf.subarray(i + 4);
		}
		while (state === 'raw' && buf.length > 0) {
			onFrame(buf, null);
			buf = Buffer.alloc(0);
		}
		while (state === 'frames' && buf.length >= 2) {
			let len = buf[1] & 127, hl = 2;
			if (len === 126 && buf.length >= 4) {
				len = buf.readUInt16BE(2);
				hl = 4;
			} else if (len === 127 && buf.length >= 10) {
				len = Number(buf.readBigUInt64BE(2));
				hl = 10;
			} else if (len >= 126)
				return;
			if (buf.length < hl + len)
				return;
			const frame = buf.subarray(0, hl + len);
			buf = buf.subarray(hl + len);
			onFrame(frame, (frame[0] & 15) === 1 ?
			    frame.subarray(hl).toString() : null);
		}
	};
}

/*
 * A TCP relay to wsd on 127.0.0.1.  mode: 'pass'; 'refuse200' or
 * 'refuse403' (a request with "Upgrade: websocket" is answered so and
 * closed, anything else passes); 'down' (connections closed at once).
 * dropIf(text) loses the text frames from wsd it returns true for.
 */
class Proxy {
	constructor(target) {
		this.target = target;
		this.mode = 'pass';
		this.conns = new Set();
		this.dropIf = null;
		this.refused = 0;
	}

	async start() {
		this.server = net.createServer((c) => this.accept(c));
		await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
		this.port = this.server.address().port;
		return this;
	}

	accept(client) {
		let head = Buffer.alloc(0);
		client.on('error', () => {});
		if (this.mode === 'down') {
			client.destroy();
			return;
		}
		const onData = (d) => {
			head = Buffer.concat([head, d]);
			if (head.indexOf('\r\n\r\n') < 0)
				return;
			client.off('data', onData);
			const upgrade = /^upgrade:\s*websocket/im.test(head.toString());
			if (upgrade && this.mode.startsWith('refuse'))
				this.refuse(client);
			else
				this.relay(client, head, upgrade);
		};
		client.on('data', onData);
	}

	refuse(client) {
		this.refused++;
		client.end(`HTTP/1.1 ${this.mode === 'refuse200' ? '200 OK' :
		    '403 Forbidden'}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
	}

	/* wsd's end is passed on after what it sent; the client's at once. */
	relay(client, head, upgrade) {
		const server = net.connect(this.target, '127.0.0.1');
		const conn = { client, server, upgrade };
		this.conns.add(conn);
		server.on('error', () => {});
		server.on('close', () => {
			this.conns.delete(conn);
			client.end();
		});
		client.on('close', () => {
			this.conns.delete(conn);
			server.destroy();
		});
		server.write(head);
		/* A later request on a kept-alive connection may be an upgrade
		 * too (undici's WebSocket shares fetch's connections). */
		client.on('data', (d) => {
			if (!upgrade && this.mode.startsWith('refuse') &&
			    /\r\nupgrade:\s*websocket/i.test(d.toString()))
				this.refuse(client);
			else
				server.write(d);
		});
		server.on('data', !upgrade ? (d) => client.write(d) :
		    frameCutter((frame, text) => {
			if (!(text && this.dropIf && this.dropIf(text)))
				client.write(frame);
		    }));
	}

	/* A close frame with code to every WebSocket client, between two
	 * frames (only whole frames were passed on), then the end. */
	closeWith(code) {
		for (const c of this.conns)
			if (c.upgrade) {
				c.client.end(Buffer.from([0x88, 2, code >> 8, code & 255]));
				c.server.destroy();
			}
	}

	/* Stop or go on reading from wsd on the upgraded connections. */
	pause(on) {
		for (const c of this.conns)
			if (c.upgrade)
				on ? c.server.pause() : c.server.resume();
	}

	dropAll() {
		for (const c of this.conns) {
			c.client.destroy();
			c.server.destroy();
		}
	}

	stop() {
		this.dropAll();
		this.server.close();
	}
}

/* Run one section; an exception is one failure, and cleanup always runs. */
async function section(name, body) {
	const cleanup = [];
	console.log(`# ${name}`);
	try {
		await body((fn) => cleanup.push(fn));
	} catch (e) {
		check(`${name}: ran to the end`, false, (e && e.stack) || String(e));
	}
	for (const fn of cleanup.reverse())
		try {
			await fn();
		} catch (e) { /* already gone */ }
}

/* ==== Sections ======================================================== */

async function severalGroups() {
	await section('several groups on one socket; publish answers', async (defer) => {
		const srv = await startServer();
		defer(() => srv.stop());
		const w = client(srv.port);
		defer(() => w.close());
		const groups = ['multi:a', 'multi:b', 'multi:c'];
		const cs = groups.map((g) => collect(w, g));
		check('opens', await reached(w, 'open'), w.states);
		check('one WebSocket for three groups',
		    await until(async () => await metric(srv.port, 'wsd_websockets') === 1,
		    DEADLINE));
		const list = JSON.parse((await request(srv.port, 'GET',
		    '/api/groups')).body).groups;
		check('each group has that one subscriber', groups.every((g) =>
		    list.some((x) => x.group === g && x.subscribers === 1)), list);
		const answers = [];
		for (const g of groups)
			answers.push(await w.publish(g, 'hello', { g }));
		check('publish resolves to {seq, delivered}', answers.every((a) =>
		    a.seq === 1 && a.delivered === 1), answers);
		await publish(srv.port, 'multi:b', 'only_b');
		check('each group gets its own events', await until(() =>
		    cs[1].seqs.length === 2, DEADLINE) && cs[0].seqs.length === 1 &&
		    cs[2].seqs.length === 1 && cs[1].events[1].type === 'only_b' &&
		    cs[0].events[0].data.g === 'multi:a', cs.map((c) => c.events));
		check('sub.position is the last delivered', cs[1].sub.position.seq === 2 &&
		    /^[0-9a-f]{8}$/.test(cs[1].sub.position.epoch), cs[1].sub.position);
		const codes = [];
		for (const [g, t] of [['multi:a', 'session_event'], ['bad group', 'x'],
		    ['multi:a', '']])
			await w.publish(g, t, {}).then(() => codes.push('ok'),
			    (e) => codes.push(e.code));
		check('publish rejects with wsd\'s code (forbidden, bad_group, ' +
		    'an empty type)', codes[0] === 'forbidden' &&
		    codes[1] === 'bad_group' && codes[2] !== 'ok', codes);
		cs[2].sub.unsubscribe();
		check('unsubscribe leaves the group on wsd', await until(async () =>
		    JSON.parse((await request(srv.port, 'GET', '/api/groups')).body)
		    .groups.some((x) => x.group === 'multi:c' && x.subscribers === 0),
		    DEADLINE));
	});
	await section('publish rate limit', async (defer) => {
		const srv = await startServer(['--publish-rate', '1']);
		defer(() => srv.stop());
		const w = client(srv.port);
		defer(() => w.close());
		collect(w, 'rate:a');
		const codes = await Promise.all([1, 2, 3].map(() =>
		    w.publish('rate:a', 't', {}).then(() => 'ok', (e) => e.code)));
		check('past --publish-rate: rate_limited', codes[0] === 'ok' &&
		    codes.includes('rate_limited'), codes);
	});
}

async function outboxAndRestart() {
	await section('outbox while down, its bound, timeouts, and a restart',
	    async (defer) => {
		let srv = await startServer();
		const port = srv.port;
		defer(() => srv.kill());
		const w = client(port, { publishTimeout: 30000 });
		defer(() => w.close());
		const c = collect(w, 'r:a');
		await w.publish('r:a', 't', { n: 1 });
		await w.publish('r:a', 't', { n: 2 });
		check('two events before the restart', await until(() =>
		    c.seqs.length === 2, DEADLINE), c.seqs);
		const oldEpoch = c.sub.position.epoch;
		await srv.kill();
		check('wsd killed: reconnecting', await reached(w, 'reconnecting'),
		    w.states);
		const held = [3, 4].map((n) => w.publish('r:a', 'while_down', { n }));
		let settled = 0;
		held.forEach((p) => p.then(() => settled++, () => settled++));

		const small = client(port, { outbox: 2, publishTimeout: 500 });
		defer(() => small.close());
		const results = await Promise.all([1, 2, 3].map((n) =>
		    small.publish('r:b', 't', { n }).then(() => 'ok', (e) => e.code)));
		check('outbox bound: the third publish is outbox_full, the two ' +
		    'held time out', results[0] === 'timeout' &&
		    results[1] === 'timeout' && results[2] === 'outbox_full', results);
		check('the publishes held while down are still waiting',
		    settled === 0);

		srv = await startServer([], { listen: '127.0.0.1:' + port });
		const answers = await Promise.all(held);
		check('the held publishes go out once wsd is back: seq 1, 2 of ' +
		    'the new stream', answers[0].seq === 1 && answers[1].seq === 2,
		    answers);
		const newEpoch = await groupEpoch(port, 'r:a');
		check('onReset with the old and the new epoch', await until(() =>
		    c.resets.length === 1, DEADLINE) && c.resets[0].oldEpoch ===
		    oldEpoch && c.resets[0].epoch === newEpoch && oldEpoch !== newEpoch,
		    { resets: c.resets, oldEpoch, newEpoch });
		check('the subscriber gets them as the new stream (1, 2 again)',
		    await until(() => c.seqs.length === 4, DEADLINE) &&
		    c.events[2].data.n === 3 && c.events[3].data.n === 4 &&
		    c.seqs.join() === '1,2,1,2' && c.gaps.length === 0,
		    { seqs: c.seqs, gaps: c.gaps });
		check('position is in the new epoch', c.sub.position.epoch === newEpoch &&
		    c.sub.position.seq === 2, c.sub.position);
		check('the state went reconnecting, then open', count(w, 'open') === 2);
	});
}

async function exactResume() {
	await section('exact resume after 1013, 1001 and a dropped connection',
	    async (defer) => {
		const srv = await startServer();
		defer(() => srv.stop());
		const proxy = await new Proxy(srv.port).start();
		defer(() => proxy.stop());
		const w = client(proxy.port);
		defer(() => w.close());
		const ca = collect(w, 'res:a'), cb = collect(w, 'res:b');
		check('opens', await reached(w, 'open'));
		const pub = publisher(srv.port, ['res:a', 'res:b']);
		defer(() => pub.stop());
		const steps = [['1013', () => proxy.closeWith(1013), 'slow consumer'],
		    ['1001', () => proxy.closeWith(1001), 'going away'],
		    ['a dropped connection', () => proxy.dropAll(), 'connection lost']];
		let opens = 1;
		for (const [what, act, reason] of steps) {
			await until(() => ca.seqs.length > 5 * opens, DEADLINE);
			act();
			check(`after ${what}: reconnecting (${reason}), then open`,
			    await reached(w, 'open', ++opens) && w.states.some((s) =>
			    s.state === 'reconnecting' && s.reason === reason),
			    w.states.slice(-3));
		}
		await until(() => ca.seqs.length > 5 * opens, DEADLINE);
		await pub.stop();
		for (const [c, g] of [[ca, 'res:a'], [cb, 'res:b']]) {
			await until(() => exactlyOnce(c, pub.acked[g]).ok, DEADLINE);
			const r = exactlyOnce(c, pub.acked[g]);
			check(`${g}: every acknowledged event exactly once, in order`,
			    r.ok, r.detail);
			check(`${g}: no gap or reset reported`, c.gaps.length === 0 &&
			    c.resets.length === 0, { gaps: c.gaps, resets: c.resets });
		}
	});
}

async function slowConsumer() {
	await section('a real slow-consumer close (1013) from wsd, then exact ' +
	    'resume', async (defer) => {
		const srv = await startServer(['--send-queue', '64K', '--history',
		    '100000', '--history-bytes', '256M']);
		defer(() => srv.stop());
		const proxy = await new Proxy(srv.port).start();
		defer(() => proxy.stop());
		const w = client(proxy.port);
		defer(() => w.close());
		const c = collect(w, 'slow:a');
		check('opens', await reached(w, 'open'));
		const acked = [await publish(srv.port, 'slow:a')];
		await until(() => c.seqs.length === 1, DEADLINE);
		/* The proxy stops reading: wsd's queue for the client fills past
		 * --send-queue once the kernel's buffers are full. */
		proxy.pause(true);
		const big = 'x'.repeat(32 * 1024);
		const slow = 'wsd_slow_consumer_closes_total';
		for (let i = 0; i < 4000 && await metric(srv.port, slow) === 0; i++)
			for (let j = 0; j < 20; j++)
				acked.push(await publish(srv.port, 'slow:a', 'big', { big }));
		check('wsd closed the client as a slow consumer',
		    await metric(srv.port, slow) === 1, acked.length);
		console.log('# events published before the close: ' + acked.length);
		proxy.pause(false);
		check('the client reconnects (slow consumer)', await reached(w,
		    'open', 2) && w.states.some((s) => s.reason === 'slow consumer'),
		    w.states.slice(-3));
		acked.push(await publish(srv.port, 'slow:a'));
		await until(() => exactlyOnce(c, acked).ok, DEADLINE);
		const r = exactlyOnce(c, acked);
		check('every acknowledged event exactly once', r.ok && c.gaps.length ===
		    0 && c.resets.length === 0, r.detail);
	});
}

async function gaps() {
	await section('a frame lost on the way is filled from HTTP history',
	    async (defer) => {
		const srv = await startServer();
		defer(() => srv.stop());
		const proxy = await new Proxy(srv.port).start();
		defer(() => proxy.stop());
		let lost = 0;
		proxy.dropIf = (text) => /"group":"fill:a","seq":3,/.test(text) &&
		    ++lost > 0;
		const w = client(proxy.port);
		defer(() => w.close());
		const c = collect(w, 'fill:a');
		check('opens', await reached(w, 'open'));
		for (let i = 1; i <= 5; i++)
			await publish(srv.port, 'fill:a', 'ev', { i });
		check('1..5 delivered in order, 3 from history', await until(() =>
		    c.seqs.length === 5, DEADLINE) && c.seqs.join() === '1,2,3,4,5' &&
		    c.events[2].data.i === 3 && lost === 1, { seqs: c.seqs, lost });
		check('onGap {from 3, to 3, filled: true}', c.gaps.length === 1 &&
		    c.gaps[0].from === 3 && c.gaps[0].to === 3 && c.gaps[0].filled &&
		    c.gaps[0].group === 'fill:a' && c.gaps[0].epoch ===
		    c.sub.position.epoch, c.gaps);
	});
	await section('events no longer kept are reported with the exact range',
	    async (defer) => {
		const srv = await startServer(['--history', '5']);
		defer(() => srv.stop());
		const proxy = await new Proxy(srv.port).start();
		defer(() => proxy.stop());
		const w = client(proxy.port);
		defer(() => w.close());
		const c = collect(w, 'gap:a');
		check('opens', await reached(w, 'open'));
		await publish(srv.port, 'gap:a');
		await publish(srv.port, 'gap:a');
		await until(() => c.seqs.length === 2, DEADLINE);
		proxy.mode = 'down';
		proxy.dropAll();
		check('cut off: reconnecting', await reached(w, 'reconnecting'));
		for (let i = 3; i <= 22; i++)
			await publish(srv.port, 'gap:a');
		proxy.mode = 'pass';
		check('back: open', await reached(w, 'open', 2), w.states);
		check('18..22 (the five kept) delivered after 1, 2', await until(() =>
		    c.seqs.length === 7, DEADLINE) &&
		    c.seqs.join() === '1,2,18,19,20,21,22', c.seqs);
		check('onGap {from 3, to 17, filled: false}', c.gaps.length === 1 &&
		    c.gaps[0].from === 3 && c.gaps[0].to === 17 && !c.gaps[0].filled,
		    c.gaps.slice(0, 3));
		check('no reset', c.resets.length === 0, c.resets);
	});
}

async function tokens() {
	await section('tokens: 1008 asks getToken, a refused token stops',
	    async (defer) => {
		const srv = await startServer(['--token-secret', SECRET]);
		defer(() => srv.stop());
		const now = Math.floor(Date.now() / 1000);
		const claims = { sub: 'c', groups: ['tok:*'], publish: true };
		/* wsd allows 30 s of leeway: this one runs out in about 8 s. */
		const short = jwt(SECRET, { ...claims, exp: now - 22 });
		let asked = 0;
		const w = client(srv.port, { token: short, getToken: async () => {
			asked++;
			return jwt(SECRET, { ...claims, exp: now + 600 });
		} });
		defer(() => w.close());
		const c = collect(w, 'tok:a');
		check('opens with the short token', await reached(w, 'open'), w.states);
		const writer = jwt(SECRET, { ...claims, exp: now + 600 });
		const pub = publisher(srv.port, ['tok:a'], 20, writer);
		defer(() => pub.stop());
		check('closed with 1008: reconnecting (token expired), then open',
		    await reached(w, 'open', 2) && w.states.some((s) => s.state ===
		    'reconnecting' && s.reason === 'token expired'), w.states);
		check('getToken asked once', asked === 1, asked);
		await until(() => c.seqs.length > pub.acked['tok:a'].length - 1 &&
		    c.seqs.length > 10, DEADLINE);
		await pub.stop();
		await until(() => exactlyOnce(c, pub.acked['tok:a']).ok, DEADLINE);
		const r = exactlyOnce(c, pub.acked['tok:a']);
		check('every acknowledged event exactly once across the refresh',
		    r.ok, r.detail);

		const refused = 'wsd_handshake_failures_total{reason="refused"}';
		const before = await metric(srv.port, refused);
		let asked2 = 0;
		const bad = client(srv.port, { token: jwt('x'.repeat(32), claims),
		    getToken: async () => {
			asked2++;
			return jwt('y'.repeat(32), claims);
		} });
		defer(() => bad.close());
		collect(bad, 'tok:b');
		const held = bad.publish('tok:b', 't', {}).then(() => 'ok',
		    (e) => e.code);
		check('a refused token: closed, reason unauthorized', await until(() =>
		    bad.state.state === 'closed', DEADLINE) &&
		    bad.state.reason === 'unauthorized', bad.states);
		check('an error event unauthorized', bad.errors.some((e) =>
		    e.code === 'unauthorized'), bad.errors);
		check('getToken was asked once before giving up', asked2 === 1, asked2);
		check('the held publish is rejected unauthorized',
		    await held === 'unauthorized');
		check('two upgrades were refused (the first token, the one from ' +
		    'getToken)', await metric(srv.port, refused) - before === 2,
		    await metric(srv.port, refused) - before);
		const stopped = await until(async () => await metric(srv.port,
		    refused) - before > 2, 20 * 100);
		check('no more upgrades for 20 backoff periods', !stopped);

		let asked3 = 0;
		const fixed = client(srv.port, { token: jwt('x'.repeat(32), claims),
		    getToken: async () => {
			asked3++;
			return jwt(SECRET, claims);
		} });
		defer(() => fixed.close());
		const cf = collect(fixed, 'tok:c');
		check('a refused token replaced by getToken opens', await reached(
		    fixed, 'open') && asked3 === 1, fixed.states);
		await publish(srv.port, 'tok:c', 'tick', {}, writer);
		check('and receives', await until(() => cf.seqs.length === 1, DEADLINE));
	});
}

async function liveness() {
	await section('a wsd that stops answering is declared dead', async (defer) => {
		const srv = await startServer();
		defer(() => srv.stop());
		defer(() => process.kill(srv.pid, 'SIGCONT'));
		const w = client(srv.port, { pingInterval: 500, deadAfter: 3000,
		    openTimeout: 1000 });
		defer(() => w.close());
		const c = collect(w, 'live:a');
		check('opens', await reached(w, 'open'));
		const acked = [await publish(srv.port, 'live:a')];
		await until(() => c.seqs.length === 1, DEADLINE);
		const dead = () => w.states.filter((s) => s.reason === 'dead').length;
		check('no false alarm while wsd answers', dead() === 0, w.states);
		const t0 = Date.now();
		process.kill(srv.pid, 'SIGSTOP');
		check('SIGSTOP: reconnecting, reason dead', await until(() =>
		    dead() === 1, DEADLINE), w.states);
		const after = Date.now() - t0;
		/* The last pong may have come up to a ping interval before. */
		check('not before deadAfter (3000 ms) less a ping interval',
		    after >= 3000 - 500, after);
		process.kill(srv.pid, 'SIGCONT');
		check('SIGCONT: open again', await reached(w, 'open', 2), w.states);
		for (let i = 0; i < 5; i++)
			acked.push(await publish(srv.port, 'live:a'));
		await until(() => exactlyOnce(c, acked).ok, DEADLINE);
		const r = exactlyOnce(c, acked);
		check('every event exactly once', r.ok && c.gaps.length === 0 &&
		    c.resets.length === 0, r.detail);
	});
}

async function retrying() {
	await section('retryNow() and the online event skip the backoff',
	    async (defer) => {
		let srv = await startServer();
		const port = srv.port;
		defer(() => srv.kill());
		/* A stand-in for a browser window's 'online' event. */
		const win = new EventTarget();
		globalThis.addEventListener = win.addEventListener.bind(win);
		globalThis.removeEventListener = win.removeEventListener.bind(win);
		defer(() => {
			delete globalThis.addEventListener;
			delete globalThis.removeEventListener;
		});
		const w = client(port, { backoff: { base: 60000, cap: 60000 } });
		defer(() => w.close());
		collect(w, 'retry:a');
		check('opens', await reached(w, 'open'));
		for (const [what, kick] of [['retryNow()', () => w.retryNow()],
		    ['the online event', () => win.dispatchEvent(new Event('online'))]]) {
			const opens = count(w, 'open');
			await srv.kill();
			/* Wait for a delay long enough to tell a retry from it. */
			const slow = await until(() => {
				const s = w.states[w.states.length - 1];
				return s.state === 'reconnecting' && s.delay > 10000 && s;
			}, DEADLINE);
			check(`${what}: a long delay was drawn`, !!slow, w.states.slice(-2));
			const due = Date.now() + slow.delay;
			srv = await startServer([], { listen: '127.0.0.1:' + port });
			kick();
			check(`${what}: open again before the delay`, await reached(w,
			    'open', opens + 1) && Date.now() < due, w.states.slice(-2));
		}
	});
}

async function fallback() {
	await section('fallback to SSE when upgrades are refused, and back',
	    async (defer) => {
		const srv = await startServer(['--ping-interval', '1']);
		defer(() => srv.stop());
		const proxy = await new Proxy(srv.port).start();
		defer(() => proxy.stop());
		proxy.mode = 'refuse403';
		const w = client(proxy.port, { fallbackAfter: 2, deadAfter: 5000 });
		defer(() => w.close());
		/* since 0: from the stream's start, so the events published
		 * before the first subscribe count too. */
		const ca = collect(w, 'fb:a', { since: 0 });
		const cb = collect(w, 'fb:b', { since: 0 });
		const pub = publisher(srv.port, ['fb:a', 'fb:b'], 10);
		defer(() => pub.stop());
		check('upgrades answered 403 by a proxy: state fallback over sse',
		    await reached(w, 'fallback', 1, 'sse'), w.states);
		check('the proxy\'s 403 is not taken for a refused token',
		    count(w, 'closed') === 0 && proxy.refused >= 1, w.states);
		check('one SSE stream carries both groups', await until(async () =>
		    await metric(srv.port, 'wsd_sse_streams') === 1, DEADLINE));
		await until(() => ca.seqs.length > 10, DEADLINE);
		const viaHttp = await w.publish('fb:a', 'from_client', { http: true });
		check('publish over HTTP while on SSE', viaHttp.seq > 0, viaHttp);
		check('it arrives over SSE', await until(() => ca.events.some((e) =>
		    e.type === 'from_client'), DEADLINE));
		proxy.mode = 'pass';
		check('upgrades let through: back to WebSocket', await reached(w,
		    'open', 1, 'websocket'), w.states);
		check('the SSE stream was dropped', await until(async () =>
		    await metric(srv.port, 'wsd_sse_streams') === 0, DEADLINE));
		await until(() => ca.seqs.length > 30, DEADLINE);
		proxy.mode = 'refuse200';
		proxy.dropAll();
		check('a proxy answering 200 to upgrades: fallback again',
		    await reached(w, 'fallback', 2, 'sse'), w.states);
		await until(() => ca.seqs.length > 50, DEADLINE);
		proxy.mode = 'pass';
		check('and back to WebSocket', await reached(w, 'open', 2,
		    'websocket'), w.states);
		await until(() => ca.seqs.length > 70, DEADLINE);
		await pub.stop();
		pub.acked['fb:a'].push(viaHttp.seq);
		pub.acked['fb:a'].sort((x, y) => x - y);
		for (const [c, g] of [[ca, 'fb:a'], [cb, 'fb:b']]) {
			await until(() => exactlyOnce(c, pub.acked[g]).ok, DEADLINE);
			const r = exactlyOnce(c, pub.acked[g]);
			check(`${g}: every acknowledged event exactly once across ` +
			    'four switches', r.ok, r.detail);
			check(`${g}: no gap or reset`, c.gaps.length === 0 &&
			    c.resets.length === 0, { gaps: c.gaps, resets: c.resets });
		}
	});
}

/* The sections again in a child node on Node's own WebSocket; each of
 * its results is one here. */
async function builtinWebSocket() {
	console.log('# the same with Node\'s own WebSocket');
	const flags = typeof globalThis.WebSocket === 'function' ? [] :
	    ['--experimental-websocket'];
	const child = spawn(process.execPath, [...flags, __filename], { env:
	    { ...process.env, WSD_TEST_WEBSOCKET: 'global' },
	    stdio: ['ignore', 'pipe', 'pipe'] });
	let out = '';
	child.stdout.on('data', (d) => { out += d; });
	child.stderr.on('data', (d) => { out += d; });
	const rc = await new Promise((r) => child.on('exit', r));
	for (const line of out.split('\n'))
		if (line.startsWith('ok   '))
			check('builtin: ' + line.slice(5), true);
		else if (line.startsWith('FAIL: '))
			check('builtin: ' + line.slice(6), false);
	check('builtin: the run ended with its summary', /\n\d+ passed, \d+ failed\n$/
	    .test(out), `exit ${rc}: ${out.slice(-500)}`);
}

/* wsd.js as a page loads it, in headless Chromium, on a wsd origin. */
async function browser() {
	await section('in a browser', async (defer) => {
		let chromium;
		try {
			chromium = require('playwright-core').chromium;
		} catch (e) {
			check('playwright-core installed (npm ci --prefix test)', false);
			return;
		}
		if (!check(`${CHROMIUM} installed`, fs.existsSync(CHROMIUM)))
			return;
		let srv = await startServer(['--ping-interval', '1']);
		const port = srv.port;
		defer(() => srv.kill());
		const b = await openBrowser(chromium);
		defer(() => b.close());
		/* /wsd.js itself is a document of wsd's origin with no CSP. */
		await b.page.goto(`http://127.0.0.1:${port}/wsd.js`);
		await b.page.addScriptTag({ url: '/wsd.js' });
		check('a classic script defines Wsd', await b.page.evaluate(() =>
		    typeof Wsd === 'function' && typeof module === 'undefined'));
		await b.page.evaluate(() => {
			window.got = { ws: [], sse: [], resets: [], states: [] };
			const backoff = { base: 100, cap: 1000 };
			window.w = new Wsd(undefined, { backoff });	/* the page's origin */
			w.on('state', (s) => got.states.push(s.state + ' ' + s.transport));
			w.subscribe('br:a', (e) => got.ws.push(e.seq),
			    { onReset: (r) => got.resets.push(r) });
			window.s = new Wsd(undefined, { transport: 'sse', backoff });
			s.subscribe('br:a', (e) => got.sse.push(e.seq));
		});
		const got = () => b.page.evaluate(() => got);
		check('open over WebSocket', await until(async () =>
		    (await got()).states.includes('open websocket'), DEADLINE));
		const ack = await b.page.evaluate(() => w.publish('br:a', 't', {}));
		check('publish over WebSocket', ack.seq === 1, ack);
		const ack2 = await b.page.evaluate(() => s.publish('br:a', 't', {}));
		check('publish over HTTP (transport sse)', ack2.seq === 2, ack2);
		check('both receive 1, 2', await until(async () => {
			const g = await got();
			return g.ws.join() === '1,2' && g.sse.join() === '1,2';
		}, DEADLINE), await got());
		await srv.kill();
		srv = await startServer(['--ping-interval', '1'],
		    { listen: '127.0.0.1:' + port });
		await publish(port, 'br:a');
		check('after a restart: onReset, then the new stream over both',
		    await until(async () => {
			const g = await got();
			return g.resets.length === 1 && g.ws.join() === '1,2,1' &&
			    g.sse.join() === '1,2,1';
		}, DEADLINE), await got());
		await b.page.evaluate(() => { w.close(); s.close(); });

		const tsrv = await startServer(['--token-secret', SECRET]);
		defer(() => tsrv.stop());
		await b.page.goto(`http://127.0.0.1:${tsrv.port}/wsd.js`);
		await b.page.addScriptTag({ url: '/wsd.js' });
		const refused = await b.page.evaluate(() => new Promise((resolve) => {
			const bad = new Wsd(undefined, { token: 'a.b.c' });
			bad.on('state', (st) => st.state === 'closed' && resolve(st));
			bad.subscribe('br:b', () => {});
		}));
		check('a refused token is told from a failed upgrade: closed, ' +
		    'unauthorized', refused.reason === 'unauthorized', refused);
	});
}

async function laterCredentials() {
	await section('setApiKey and setToken: credentials given later',
	    async (defer) => {
		const key = 'k'.repeat(32), secret = 's'.repeat(32);
		const srv = await startServer(['--api-key', key, '--token-secret',
		    secret]);
		defer(() => srv.stop());
		/* Over SSE a publish is an HTTP POST: it takes the key. */
		const now = Math.floor(Date.now() / 1000);
		const tok = jwt(secret, { sub: 't', exp: now + 600,
		    groups: ['later'] });
		const w = client(srv.port, { transport: 'sse', token: tok });
		defer(() => w.close());
		collect(w, 'later');
		check('opens over SSE with its token', await reached(w, 'fallback',
		    1) || await reached(w, 'open', 1), w.states);
		const before = await w.publish('later', 't', {}).then(() => 'ok',
		    (e) => e.code);
		w.setApiKey(key);
		const after = await w.publish('later', 't', {}).then((r) => r.seq,
		    (e) => e.code);
		check('the token may not publish (forbidden); after setApiKey ' +
		    'the key does', before === 'forbidden' && after === 1,
		    { before, after });
		const w2 = client(srv.port, { token: 'not.a.token' });
		defer(() => w2.close());
		collect(w2, 'later');
		check('a bad token stops the client', await reached(w2, 'closed'),
		    w2.states);
		w2.setToken(tok);
		w2.retryNow();
		check('setToken then retryNow: it opens with the new token',
		    await until(() => w2.states.length > 0 &&
		    w2.states[w2.states.length - 1].state === 'open', DEADLINE),
		    w2.states.slice(-3));
	});
}

async function main() {
	await severalGroups();
	await laterCredentials();
	await outboxAndRestart();
	await exactResume();
	await slowConsumer();
	await gaps();
	await tokens();
	await liveness();
	await retrying();
	await fallback();
	if (!BUILTIN) {
		await builtinWebSocket();
		await browser();
	}
}

main().catch((e) => check('test ran to the end', false, e.stack))
    .then(() => done());
