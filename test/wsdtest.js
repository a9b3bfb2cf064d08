/*
 * wsdtest.js - what the black-box JS tests (test/test_*.js) share.
 *
 * check() counts one assertion, done() prints "N passed, M failed" and
 * exits.  deadline() bounds one promise, until() polls.  startServer()
 * runs wsd ($WSD, else ./wsd) on a loopback port read from its log line
 * "listening addr=127.0.0.1:PORT"; stop() sends SIGTERM to that PID and
 * checks exit status 0, and a wsd still running when the test exits is
 * killed; withServer() wraps a whole test around one wsd.  request() is
 * one HTTP call; need() requires a node module or fails; openBrowser()
 * starts headless Chromium (playwright-core) on a fresh profile with the
 * flags below.
 */
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

const DEADLINE = 20000;		/* ms; any single wait */
const LAUNCH_DEADLINE = 60000;	/* a cold browser start on a loaded 2-core box */
const WSD = process.env.WSD || path.join(__dirname, '..', 'wsd');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu',
    '--disable-background-networking', '--disable-component-update',
    '--no-first-run', '--disable-sync', '--disable-quic',
    '--disable-breakpad', '--disable-crash-reporter'];

let passed = 0, failed = 0;
const running = new Set();	/* wsd processes started here, not yet exited */

function check(name, ok, detail) {
	if (ok) {
		passed++;
		console.log(`ok   ${name}`);
	} else {
		failed++;
		console.error(`FAIL: ${name}` + (detail === undefined ? '' : ': ' +
		    (typeof detail === 'string' ? detail : JSON.stringify(detail))));
	}
	return ok;
}

function done() {
	console.log(`${passed} passed, ${failed} failed`);
	process.exit(failed ? 1 : 0);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* promise, or a rejection "timeout: what" after ms. */
function deadline(promise, ms, what) {
	let t;
	const timeout = new Promise((_, rej) => {
		t = setTimeout(() => rej(new Error(`timeout: ${what}`)), ms);
	});
	return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

/* Poll fn() until it returns a truthy value or ms pass; its last value. */
async function until(fn, ms, every = 100) {
	const end = Date.now() + ms;
	for (;;) {
		const v = await fn();
		if (v || Date.now() >= end)
			return v;
		await sleep(every);
	}
}

/* wsd with args on listen (a free loopback port by default); resolves to
 * { port, pid, log(), stop(), kill() } once it logs "listening". */
function startServer(args = [], { listen = '127.0.0.1:0' } = {}) {
	const proc = spawn(WSD, ['--listen', listen, ...args],
	    { stdio: ['ignore', 'ignore', 'pipe'] });
	running.add(proc);
	let log = '', port = null;
	const exited = new Promise((resolve) => proc.on('exit', (code, sig) => {
		running.delete(proc);
		resolve(sig || code);
	}));
	const alive = () => proc.exitCode === null && proc.signalCode === null;
	const kill = () => {
		if (!proc.pid)		/* never started */
			return Promise.resolve();
		if (alive())
			try { process.kill(proc.pid, 'SIGKILL'); } catch (e) { /* gone */ }
		return deadline(exited, 5000, 'wsd killed').catch(() => {});
	};
	const listening = new Promise((resolve, reject) => {
		proc.stderr.on('data', (d) => {
			log = (log + d).slice(-20000);
			const m = port === null && /listening addr=\S+:(\d+)/.exec(log);
			if (m)
				resolve(port = Number(m[1]));
		});
		proc.on('error', (e) => {
			running.delete(proc);
			reject(new Error(`spawn ${WSD}: ${e.message}`));
		});
		exited.then((rc) => reject(new Error(`wsd exited (${rc}) before ` +
		    `listening: ${log.slice(-2000)}`)));
	});
	return deadline(listening, DEADLINE, 'wsd start').then((p) => ({
		port: p,
		pid: proc.pid,
		log: () => log,
		/* SIGTERM by PID (SIGKILL after DEADLINE); checks exit 0. */
		async stop() {
			if (alive())
				process.kill(proc.pid, 'SIGTERM');
			let rc;
			try {
				rc = await deadline(exited, DEADLINE, 'wsd exit');
			} catch (e) {
				await kill();
				rc = 'killed';
			}
			return check('wsd exits 0 on SIGTERM', rc === 0,
			    `rc=${rc} ${log.slice(-500)}`);
		},
		kill,
	}), async (e) => {
		await kill();
		throw e;
	});
}

/* The usual test: wsd with args, then body(srv), then stop() and done().
 * body throwing is one failure, named what. */
async function withServer(args, what, body) {
	let srv;
	try {
		srv = await startServer(args);
	} catch (e) {
		check('wsd starts', false, e.message);
		done();
	}
	try {
		await body(srv);
	} catch (e) {
		check(what, false, (e && e.stack) || String(e));
	}
	await srv.stop();
	done();
}

/* Never leave a wsd behind, whatever way the test ends. */
process.on('exit', () => {
	for (const p of running)
		try { process.kill(p.pid, 'SIGKILL'); } catch (e) { /* gone */ }
});

/* One HTTP request to 127.0.0.1:port, a JSON body if body is given:
 * { status, headers, body }. */
function request(port, method, urlPath, body) {
	return new Promise((resolve, reject) => {
		const data = body === undefined ? null : JSON.stringify(body);
		const req = http.request({ host: '127.0.0.1', port, method,
		    path: urlPath, headers: data ? { 'Content-Type':
		    'application/json', 'Content-Length': Buffer.byteLength(data) }
		    : {} }, (res) => {
			let text = '';
			res.setEncoding('utf8');
			res.on('data', (c) => { text += c; });
			res.on('end', () => resolve({ status: res.statusCode,
			    headers: res.headers, body: text }));
		});
		req.setTimeout(10000, () => req.destroy(new Error('timeout')));
		req.on('error', reject);
		req.end(data);
	});
}

/* require(name), else one failure and done(). */
function need(name) {
	try {
		return require(name);
	} catch (e) {
		check(`node module ${name} installed (npm install --prefix test)`,
		    false, e.message.split('\n')[0]);
		done();
	}
}

/* playwright-core's chromium, once CHROMIUM is checked to be there. */
function needChromium() {
	const { chromium } = need('playwright-core');
	if (!check(`${CHROMIUM} installed (apt-get install -y chromium)`,
	    fs.existsSync(CHROMIUM)))
		done();
	return chromium;
}

/* A fresh profile and the options for chromium.launchPersistentContext;
 * extra is merged into the options. */
function launchOptions(extra = {}) {
	const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsd-chromium-'));
	return { userDataDir, options: { executablePath: CHROMIUM, headless: true,
	    args: CHROMIUM_ARGS, timeout: LAUNCH_DEADLINE, ...extra } };
}

/* Headless Chromium: { context, page, close() }; close() also removes
 * the profile.  A launch that fails removes it at once. */
async function openBrowser(chromium, extra) {
	const { userDataDir, options } = launchOptions(extra);
	const rm = () => fs.rmSync(userDataDir, { recursive: true, force: true });
	const launching = chromium.launchPersistentContext(userDataDir, options);
	let context;
	try {
		context = await deadline(launching, LAUNCH_DEADLINE + 5000,
		    'chromium launch');
	} catch (e) {
		launching.then((c) => c.close()).catch(() => {}).finally(rm);
		throw e;
	}
	try {
		const page = context.pages()[0] || await context.newPage();
		return { context, page, async close() {
			await deadline(context.close(), DEADLINE, 'chromium close')
			    .catch(() => {});
			rm();
		} };
	} catch (e) {
		await context.close().catch(() => {});
		rm();
		throw e;
	}
}

module.exports = { DEADLINE, WSD, CHROMIUM, check, done, sleep, deadline,
    until, startServer, withServer, request, need, needChromium,
    launchOptions, openBrowser };
