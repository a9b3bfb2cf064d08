/*
 * test_browser_echo.js - a real browser on /echo: headless Chromium.
 *
 * Debian's /usr/bin/chromium, driven by playwright-core, opens
 * ws://127.0.0.1:PORT/echo from a page and round-trips a text and a binary
 * message, then closes cleanly.  Starts its own wsd ($WSD, else ./wsd) with
 * --echo.  A missing playwright-core or chromium is a failure:
 * npm install --prefix test; apt-get install -y chromium.
 *
 *	WSD=./wsd node test/test_browser_echo.js
 */
'use strict';
const { DEADLINE, check, deadline, needChromium, openBrowser, withServer } =
    require('./wsdtest');

/* Runs inside the page: open, echo text and binary, close. */
async function inPage(url) {
	const ws = new WebSocket(url);
	ws.binaryType = 'arraybuffer';
	await new Promise((res, rej) => {
		ws.onopen = res;
		ws.onerror = () => rej(new Error('WebSocket error before open'));
	});
	const next = () => new Promise((res, rej) => {
		ws.onmessage = (e) => res(e.data);
		ws.onclose = (e) => rej(new Error(`closed ${e.code} before echo`));
	});
	const out = { extensions: ws.extensions };
	ws.send('hello from chromium \u00e9\u20ac\u{1f600}');
	out.text = await next();
	ws.send(new Uint8Array(256).map((_, i) => i));
	out.binary = Array.from(new Uint8Array(await next()));
	const big = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 255);
	ws.send(big);
	const bigEcho = new Uint8Array(await next());
	out.bigOk = bigEcho.length === big.length &&
	    bigEcho.every((v, i) => v === big[i]);
	out.close = await new Promise((res) => {
		ws.onclose = (e) => res({ code: e.code, clean: e.wasClean });
		ws.close(1000, 'bye');
	});
	return out;
}

async function browser(chromium, port) {
	const b = await openBrowser(chromium);
	try {
		const r = await deadline(b.page.evaluate(inPage,
		    `ws://127.0.0.1:${port}/echo`), DEADLINE, 'page round trip');
		check('chromium: text echoed',
		    r.text === 'hello from chromium \u00e9\u20ac\u{1f600}',
		    JSON.stringify(r.text));
		check('chromium: binary echoed', r.binary.length === 256 &&
		    r.binary.every((v, i) => v === i), `len=${r.binary.length}`);
		check('chromium: 1 MiB binary echoed', r.bigOk);
		check('chromium: no extension negotiated', r.extensions === '',
		    JSON.stringify(r.extensions));
		check('chromium: clean close 1000', r.close.code === 1000 &&
		    r.close.clean, JSON.stringify(r.close));
	} finally {
		await b.close();
	}
}

const chromium = needChromium();
withServer(['--echo'], 'chromium: the page ran to its end',
    (srv) => browser(chromium, srv.port));
