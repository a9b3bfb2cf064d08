/*
 * test_interop.js - an independent client, Node's `ws`, on /echo.
 *
 * Text and binary, small and 1 MiB, fragmented (send with fin: false),
 * ping/pong and a clean close.  Starts its own wsd ($WSD, else ./wsd) on
 * 127.0.0.1:0 with --echo and reads the port from its log.  Missing node
 * modules are a failure: npm install --prefix test.
 *
 *	WSD=./wsd node test/test_interop.js
 */
'use strict';
const crypto = require('crypto');
const { DEADLINE, check, deadline, need, withServer } = require('./wsdtest');

/* Messages in arrival order; next() waits for one. */
function inbox(ws) {
	const queue = [], waiters = [];
	ws.on('message', (data, isBinary) => {
		const m = { data, isBinary };
		if (waiters.length) waiters.shift()(m);
		else queue.push(m);
	});
	return () => deadline(queue.length ? Promise.resolve(queue.shift()) :
	    new Promise((res) => waiters.push(res)), DEADLINE, 'message');
}

async function roundtrip(ws, next, payload, name) {
	const binary = Buffer.isBuffer(payload);
	ws.send(payload, { binary });
	const m = await next();
	const got = binary ? m.data : m.data.toString('utf8');
	check(name, m.isBinary === binary &&
	    (binary ? payload.equals(got) : got === payload),
	    `isBinary=${m.isBinary} len=${m.data.length}`);
}

async function fragmented(ws, next, parts, name) {
	const binary = Buffer.isBuffer(parts[0]);
	parts.forEach((p, i) => ws.send(p, { binary, fin: i === parts.length - 1 }));
	const m = await next();
	const want = binary ? Buffer.concat(parts) : parts.join('');
	const got = binary ? m.data : m.data.toString('utf8');
	check(name, m.isBinary === binary &&
	    (binary ? want.equals(got) : got === want), `len=${m.data.length}`);
}

async function client(port) {
	const ws = new WebSocket(`ws://127.0.0.1:${port}/echo`,
	    { maxPayload: 4 << 20 });
	const next = inbox(ws);
	await deadline(new Promise((res, rej) => {
		ws.once('open', res);
		ws.once('error', rej);
	}), DEADLINE, 'open');
	check('ws: no extension negotiated', ws.extensions === '',
	    JSON.stringify(ws.extensions));
	await roundtrip(ws, next, 'hello from node ws', 'ws: text');
	await roundtrip(ws, next, '\u00b5\u20ac\u{1f600} \u03ba\u1f79\u03c3\u03bc\u03b5',
	    'ws: multi-byte text');
	await roundtrip(ws, next, '', 'ws: empty text');
	await roundtrip(ws, next, Buffer.from([...Array(256).keys()]), 'ws: binary');
	await roundtrip(ws, next, 't'.repeat(1 << 20), 'ws: 1 MiB text');
	await roundtrip(ws, next, crypto.randomBytes(1 << 20), 'ws: 1 MiB binary');
	await fragmented(ws, next, ['frag1 ', '\u00e9\u20ac ', 'frag3'],
	    'ws: fragmented text');
	await fragmented(ws, next, [Buffer.from([0, 1]), Buffer.alloc(0),
	    Buffer.alloc(70000, 2)], 'ws: fragmented binary');
	await fragmented(ws, next, Array.from({ length: 16 },
	    () => crypto.randomBytes(65536)), 'ws: 1 MiB binary in 16 fragments');

	const pong = new Promise((res) => ws.once('pong', res));
	ws.ping(Buffer.from('interop-ping'));
	const data = await deadline(pong, DEADLINE, 'pong');
	check('ws: ping answered with its payload',
	    data.toString() === 'interop-ping', data.toString());

	const closed = new Promise((res) => ws.once('close', (code) => res(code)));
	ws.close(1000, 'bye');
	const code = await deadline(closed, DEADLINE, 'close');
	check('ws: close code echoed', code === 1000, `code=${code}`);
}

const WebSocket = need('ws');
withServer(['--echo'], 'ws: the session ran to its end',
    (srv) => client(srv.port));
