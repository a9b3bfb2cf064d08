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
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const DEADLINE = 20000;		/* ms; any single wait */
const LAUNCH_DEADLINE = 60000;	/* a cold browser start on a loaded 2-core box */
const CHROMIUM = '/usr/bin/chromium';
let passed = 0, failed = 0;

function check(name, cond, detail) {
	if (cond) passed++;
	else {
		failed++;
		console.error(`FAIL: ${name} ${detail === undefined ? '' : detail}`);
	}
	return cond;
}

function done() {
	console.log(`${passed} passed, ${failed} failed`);
	process.exit(failed ? 1 : 0);
}

function deadline(promise, ms, what) {
	let t;
	const timeout = new Promise((_, rej) => {
		t = setTimeout(() => rej(new Error(`timeout: ${what}`)), ms);
	});
	return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

/* wsd on a free loopback port: { port, stop() }. */
function startServer() {
	const bin = process.env.WSD || path.join(__dirname, '..', 'wsd');
	const proc = spawn(bin, ['--listen', '127.0.0.1:0', '--echo'],
	    { stdio: ['ignore', 'ignore', 'pipe'] });
	let log = '';
	const port = new Promise((resolve, reject) => {
		proc.stderr.on('data', (d) => {
			log += d;
			const m = /listening addr=127\.0\.0\.1:(\d+)/.exec(log);
			if (m) resolve(Number(m[1]));
		});
		proc.on('error', reject);
		proc.on('exit', (code) => reject(new Error(`wsd exited ${code}: ${log}`)));
	});
	const exited = new Promise((resolve) => proc.on('exit', (code, sig) =>
	    resolve(sig ? sig : code)));
	return deadline(port, DEADLINE, 'wsd start').then((p) => ({
		port: p,
		async stop() {
			if (proc.exitCode === null && proc.signalCode === null)
				process.kill(proc.pid, 'SIGTERM');
			let rc;
			try {
				rc = await deadline(exited, DEADLINE, 'wsd exit');
			} catch (e) {
				process.kill(proc.pid, 'SIGKILL');
				rc = 'killed';
			}
			check('wsd exits 0 on SIGTERM', rc === 0, `rc=${rc} ${log.slice(-500)}`);
		},
	}));
}

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
	const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wsd-chromium-'));
	let ctx;
	try {
		ctx = await deadline(chromium.launchPersistentContext(profile, {
			executablePath: CHROMIUM,
			headless: true,
			args: ['--no-sandbox', '--headless', '--disable-gpu',
			    '--disable-background-networking',
			    '--disable-component-update', '--no-first-run',
			    '--disable-sync'],
			timeout: LAUNCH_DEADLINE,
		}), LAUNCH_DEADLINE + 5000, 'chromium launch');
		const page = ctx.pages()[0] || await ctx.newPage();
		const r = await deadline(page.evaluate(inPage,
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
		if (ctx)
			await deadline(ctx.close(), DEADLINE, 'chromium close')
			    .catch(() => {});
		fs.rmSync(profile, { recursive: true, force: true });
	}
}

async function main() {
	let chromium;
	try {
		({ chromium } = require('playwright-core'));
	} catch (e) {
		check('node module playwright-core installed (npm install --prefix test)',
		    false, e.message.split('\n')[0]);
		done();
	}
	if (!check(`${CHROMIUM} installed (apt-get install -y chromium)`,
	    fs.existsSync(CHROMIUM)))
		done();
	let srv;
	try {
		srv = await startServer();
	} catch (e) {
		check('wsd starts', false, e.message);
		done();
	}
	try {
		await browser(chromium, srv.port);
	} catch (e) {
		check('chromium: the page ran to its end', false, e.stack);
	}
	await srv.stop();
	done();
}

main();
