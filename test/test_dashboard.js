#!/usr/bin/env node
/*
 * test_dashboard.js - the dashboard page (GET /) in a real browser.
 *
 * Headless Chromium (/usr/bin/chromium, Debian's `chromium` package) driven
 * by playwright-core from test/node_modules (`npm install --prefix test`).
 * The test starts its own wsd (WSD or ../wsd) with a 0.2 s tick, loads the
 * page, makes and ends sessions over HTTP and checks the toasts, counts and
 * event list; then stops wsd, sees the page fall back to polling
 * /api/sessions/count, restarts wsd on the same port and sees the page
 * reconnect and stop polling.  Last line: "N passed, M failed".
 */
'use strict';
const fs = require('fs');
const path = require('path');
const { check, done, need, needChromium, openBrowser, request, sleep,
    startServer, until } = require('./wsdtest');

const ARTIFACTS = path.join(__dirname, 'artifacts');
const TICK = '0.2';

let browser = null;		/* { context, page, close() } */
let wsd = null;			/* the wsd running now */

/* ---- In-page probes --------------------------------------------------- */

/* Records every toast added and removed and every status state, so short
 * states and momentary counts are not missed between samples. */
function installProbe() {
	const t = window.__probe = { max: 0, added: [], removed: [], states: [],
	    life: {} };
	const box = document.getElementById('toasts');
	const status = document.getElementById('status');
	let n = 0;
	t.states.push(status.dataset.state);
	new MutationObserver((recs) => {
		for (const r of recs) {
			for (const el of r.addedNodes) {
				el.dataset.probe = ++n;
				t.added.push(n);
				t.life[n] = { kind: el.dataset.kind,
				    at: performance.now() };
			}
			for (const el of r.removedNodes) {
				t.removed.push(Number(el.dataset.probe));
				t.life[el.dataset.probe].ms = performance.now() -
				    t.life[el.dataset.probe].at;
			}
		}
		t.max = Math.max(t.max, box.children.length);
	}).observe(box, { childList: true });
	new MutationObserver(() => {
		if (t.states[t.states.length - 1] !== status.dataset.state)
			t.states.push(status.dataset.state);
	}).observe(status, { attributes: true, attributeFilter: ['data-state'] });
}

function toastsInPage() {
	return [...document.querySelectorAll('#toasts .toast')].map((el) => ({
		probe: Number(el.dataset.probe),
		cls: el.className,
		title: el.querySelector('.title').textContent,
		total: el.querySelector('.total').textContent,
		bg: getComputedStyle(el).backgroundColor,
	}));
}

function rgb(s) {
	const m = /rgba?\((\d+),\s*(\d+),\s*(\d+)/.exec(s || '');
	return m ? m.slice(1, 4).map(Number) : [0, 0, 0];
}
const isGreen = (c) => { const [r, g, b] = rgb(c); return g > r + 40 && g > b + 40; };
const isRed = (c) => { const [r, g, b] = rgb(c); return r > g + 60 && r > b + 60; };

/* ---- The test --------------------------------------------------------- */

async function main() {
	const chromium = needChromium();
	const WebSocket = need('ws');

	wsd = await startServer(['--tick', TICK]);
	const port = wsd.port;
	const base = 'http://127.0.0.1:' + port;

	/* The page as served. */
	const home = await request(port, 'GET', '/');
	check('GET / is 200 text/html', home.status === 200 &&
	    /^text\/html/.test(home.headers['content-type']), home.status);
	check('GET / has a Content-Security-Policy',
	    /default-src 'none'/.test(home.headers['content-security-policy'] || ''));
	check('page loads nothing from elsewhere and never uses innerHTML',
	    !/<script[^>]+src=|<link[^>]+stylesheet|https?:\/\/|innerHTML/i
	    .test(home.body));

	browser = await openBrowser(chromium,
	    { viewport: { width: 1000, height: 720 } });
	const page = browser.page;
	const pageErrors = [], cspErrors = [], polls = [];
	page.on('pageerror', (e) => pageErrors.push(e.message));
	page.on('console', (m) => {
		if (/Content.Security.Policy/i.test(m.text()))
			cspErrors.push(m.text());
	});
	page.on('request', (r) => {
		if (r.url().includes('/api/sessions/count'))
			polls.push(Date.now());
	});
	const state = () => page.$eval('#status', (el) =>
	    el.dataset.state + '|' + el.textContent.trim());
	const text = (sel) => page.$eval(sel, (el) => el.textContent.trim())
	    .catch(() => null);
	const probe = () => page.evaluate(() => window.__probe);
	const toasts = () => page.evaluate(toastsInPage);

	await page.goto(base + '/', { waitUntil: 'load', timeout: 20000 });
	await page.evaluate(installProbe);
	check('status shows "connected"', await until(async () =>
	    (await state()) === 'connected|connected', 20000), await state());
	check('connection count shown (>= 1)', await until(async () =>
	    Number(await text('#connections')) >= 1, 10000),
	    await text('#connections'));
	check('session count starts at 0', await until(async () =>
	    (await text('#sessions')) === '0', 10000), await text('#sessions'));

	/* A second monitor client: the connection count follows, no reload. */
	const mon = new WebSocket('ws://127.0.0.1:' + port + '/ws/monitor');
	let monEvents = 0;
	mon.on('message', (m) => {
		if (JSON.parse(m).type === 'session_event')
			monEvents++;
	});
	await new Promise((res, rej) => { mon.once('open', res); mon.once('error', rej); });
	check('connection count updates without reload', await until(async () =>
	    Number(await text('#connections')) >= 2, 10000),
	    await text('#connections'));

	/* One created, one destroyed. */
	let r = await request(port, 'POST', '/api/sessions', { id: 'one' });
	check('POST /api/sessions is 201', r.status === 201, r.status);
	const created = await until(async () =>
	    (await toasts()).find((t) => /\bcreated\b/.test(t.cls)), 10000);
	check('a created toast appears', !!created);
	if (created) {
		check('created toast text', created.title === '1 session created' &&
		    created.total === 'Total: 1 session', created);
		check('created toast is green', isGreen(created.bg), created.bg);
	}
	check('session count updates to 1', await until(async () =>
	    (await text('#sessions')) === '1', 5000), await text('#sessions'));
	await sleep(1000);
	check('created toast still there after ~1 s', created && (await toasts())
	    .some((t) => t.probe === created.probe));

	r = await request(port, 'DELETE', '/api/sessions/one');
	check('DELETE /api/sessions/one is 204', r.status === 204, r.status);
	const destroyed = await until(async () =>
	    (await toasts()).find((t) => /\bdestroyed\b/.test(t.cls)), 10000);
	check('a destroyed toast appears', !!destroyed);
	if (destroyed) {
		check('destroyed toast text', destroyed.title ===
		    '1 session destroyed' && destroyed.total ===
		    'Total: 0 sessions', destroyed);
		check('destroyed toast is red', isRed(destroyed.bg), destroyed.bg);
		await page.click('#toasts .toast.destroyed button.dismiss');
		check('dismiss button removes the toast at once', await until(
		    async () => !(await toasts()).some((t) =>
		    t.probe === destroyed.probe), 2000));
	}
	check('session count updates to 0', await until(async () =>
	    (await text('#sessions')) === '0', 5000), await text('#sessions'));
	const gone = created && await until(async () => !(await toasts())
	    .some((t) => t.probe === created.probe), 10000);
	check('created toast auto-dismissed within 10 s', gone);
	if (gone) {
		const life = (await probe()).life[created.probe].ms;
		check('auto-dismiss after ~5 s', life >= 4500 && life < 9000,
		    Math.round(life) + ' ms');
	}

	/* Five creations in separate ticks: never more than three toasts. */
	const firstBurst = (await probe()).added.length + 1;
	let maxSeen = 0, sampling = true;
	const sampler = (async () => {
		while (sampling) {
			maxSeen = Math.max(maxSeen, await page.$$eval(
			    '#toasts .toast', (l) => l.length).catch(() => 0));
			await sleep(50);
		}
	})();
	for (let i = 1; i <= 5; i++) {
		r = await request(port, 'POST', '/api/sessions', { id: 'b' + i });
		if (r.status !== 201)
			check('POST b' + i, false, r.status);
		/* Next one in a later tick, so each gets its own event. */
		await until(async () => (await text('#sessions')) === String(i),
		    5000, 20);
	}
	await sleep(200);
	const burst = await toasts();
	sampling = false;
	await sampler;
	const pr = await probe();
	check('at most 3 toasts visible (sampled)', maxSeen <= 3, maxSeen);
	check('at most 3 toasts visible (every DOM change)', pr.max <= 3, pr.max);
	check('3 toasts visible after 5 quick events', burst.length === 3,
	    burst.map((t) => t.title));
	check('the newest toasts stay, newest last', burst.length > 0 &&
	    burst[burst.length - 1].total === 'Total: 5 sessions' &&
	    burst.every((t, i) => i === 0 || t.probe > burst[i - 1].probe),
	    burst.map((t) => t.total));
	const burstGone = pr.removed.filter((n) => n >= firstBurst);
	check('toasts are dismissed oldest first', burstGone.length >= 2 &&
	    burstGone.every((n, i) => n === firstBurst + i), burstGone);
	check('session count shows 5', (await text('#sessions')) === '5',
	    await text('#sessions'));

	/* Five deletions: more than ten events in all, the list keeps ten. */
	for (let i = 1; i <= 5; i++) {
		await request(port, 'DELETE', '/api/sessions/b' + i);
		await until(async () => (await text('#sessions')) ===
		    String(5 - i), 5000, 20);
	}
	await until(async () => monEvents >= 12, 3000);
	const evs = await until(async () => {
		const l = await page.$$eval('#events li', (els) => els.map((el) =>
		    ({ kind: el.dataset.kind, seq: Number(el.dataset.seq),
		    text: el.textContent })));
		return l.length === Math.min(10, monEvents) ? l : null;
	}, 5000) || [];
	check('event list keeps the last 10 of ' + monEvents, evs.length === 10,
	    evs.length);
	check('event list is newest first', evs.length > 0 &&
	    evs[0].kind === 'destroyed' && evs.every((e, i) =>
	    i === 0 || e.seq < evs[i - 1].seq), evs.map((e) => e.seq));
	check('event entry reads "\u22121 destroyed 1 \u2192 0 b5"', evs.length > 0 &&
	    /\u22121 destroyed\s*1 \u2192 0\s*b5$/.test(evs[0].text), evs[0]);
	fs.mkdirSync(ARTIFACTS, { recursive: true });
	await page.mouse.move(1, 1);	/* no hover left on a dismiss button */
	await sleep(300);		/* let the newest toast finish fading in */
	await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png') });
	check('no polling while connected', polls.length === 0, polls.length);

	/* Server gone: "disconnected", and the HTTP fallback polls. */
	mon.close();
	const stopAt = Date.now();
	await wsd.stop();		/* checks exit status 0 */
	check('status shows "disconnected"', await until(async () =>
	    (await probe()).states.includes('disconnected'), 15000),
	    (await probe()).states);
	check('falls back to polling /api/sessions/count', await until(() =>
	    polls.some((t) => t >= stopAt), 20000), polls.length);
	await page.screenshot({ path: path.join(ARTIFACTS,
	    'dashboard-disconnected.png') });

	/* Back on the same port: reconnects, stops polling. */
	const end = Date.now() + 10000;
	for (;;) {
		try {
			wsd = await startServer(['--tick', TICK],
			    { listen: '127.0.0.1:' + port });
			break;
		} catch (e) {
			if (Date.now() > end)
				throw e;
			await sleep(250);
		}
	}
	check('status shows "connected" again', await until(async () =>
	    (await state()) === 'connected|connected', 25000), await state());
	const pollsAtConnect = polls.length;
	r = await request(port, 'POST', '/api/sessions', { id: 'again' });
	check('live again: toast and count after reconnect', await until(
	    async () => (await text('#sessions')) === '1' &&
	    (await toasts()).some((t) => t.total === 'Total: 1 session'), 10000),
	    await text('#sessions'));
	/* A poll was due every 10 s: wait out one period after the last. */
	const quiet = polls[polls.length - 1] + 12500 - Date.now();
	if (quiet > 0)
		await sleep(quiet);
	check('polling stops once reconnected', polls.length === pollsAtConnect,
	    polls.length - pollsAtConnect + ' polls after reconnecting');
	check('no page errors', pageErrors.length === 0, pageErrors);
	check('no Content-Security-Policy violations', cspErrors.length === 0,
	    cspErrors);
	await defensive(browser.page.context(), base);
}

/* Whatever arrives is rendered without "NaN" or "undefined": a stand-in
 * for /ws/monitor (Playwright's routeWebSocket) sends malformed events. */
async function defensive(context, base) {
	const bad = [
		{ type: 'session_event', event_type: 'session_created' },
		{ type: 'session_event', event_type: 'session_destroyed',
		    data: { current_count: 'x', previous_count: null,
		    delta: '-3', sessions: 's1' } },
		{ type: 'session_event', event_type: 'bogus', data: 7 },
	];
	const page = await context.newPage();
	await page.routeWebSocket(/\/ws\/monitor/, (ws) => {
		ws.onMessage(() => {});
		setTimeout(() => bad.forEach((m) => ws.send(JSON.stringify(m))),
		    300);
	});
	await page.goto(base + '/', { waitUntil: 'load', timeout: 20000 });
	const shown = await until(async () => (await page.$$eval('#events li',
	    (l) => l.length)) === bad.length, 10000);
	check('malformed session events are listed', shown);
	const body = await page.evaluate(() => document.body.innerText);
	check('malformed events render without NaN or undefined',
	    !/NaN|undefined|\[object/.test(body), body.slice(0, 400));
	await page.close();
}

const watchdog = setTimeout(() => {	/* wsdtest kills wsd on exit */
	check('test timed out after 150 s', false);
	done();
}, 150000);

(async () => {
	const t0 = Date.now();
	try {
		await main();
	} catch (e) {
		check('test ran to the end', false, e.stack || String(e));
	} finally {
		if (browser)
			await browser.close();
		if (wsd)
			await wsd.kill();
		clearTimeout(watchdog);
	}
	console.log('# ' + ((Date.now() - t0) / 1000).toFixed(1) + ' s');
	done();
})();
