#!/usr/bin/env node
/*
 * test_dashboard.js - the dashboard page (GET /) in a real browser.
 *
 * Headless Chromium (/usr/bin/chromium, Debian's `chromium` package) driven
 * by playwright-core, with axe-core for the accessibility checks, both from
 * test/node_modules (`npm install --prefix test`).  The test starts its own
 * wsd (WSD or ../wsd) with a 0.2 s tick and an fd alert, and goes through
 * the page as an operator would:
 *
 *   1. the page as served (CSP, nothing from elsewhere);
 *   2. overview: state, cards, charts; the toast contract (colours, texts,
 *      5 s, dismiss, at most 3, oldest first) and the recent event list;
 *   3. sessions: the table with metadata, live without reload;
 *   4. one session: an agent's lifecycle with the tool's name, chat, a
 *      query with its typing indicator and response, unknown events as
 *      collapsible JSON; history first, then live;
 *   5. groups and a live tail with pause and resume; connections;
 *   6. host figures and an fd alert: toast, history, acknowledge;
 *   7. the publish console: validation, then a publish;
 *   8. 1,000 events/s into the tailed group, the page still answering;
 *   9. 10,000 sessions: the table pages without freezing;
 *  10. axe-core on every view, light and dark; screenshots of every view
 *      (light, dark, phone) under test/artifacts/ (and docs/*.jpg for the
 *      README when DOCS=1);
 *  11. restart: wsd killed and started again on the same port;
 *  12. a proxy that refuses WebSocket (fallback over SSE), and one that
 *      refuses /sse too (polling /health);
 *  13. tokens: only what the token grants; --api-key asked in the page;
 *      malformed events.
 *
 * Every wait is for a condition, with a generous deadline.  Last line:
 * "N passed, M failed".
 */
'use strict';
const fs = require('fs');
const net = require('net');
const path = require('path');
const { spawnSync } = require('child_process');
const { WSD, check, done, need, needChromium, openBrowser, request, sleep,
    startServer, until } = require('./wsdtest');

const ARTIFACTS = path.join(__dirname, 'artifacts');
const DOCS = path.join(__dirname, '..', 'docs');
const TICK = '0.2';
const ALERT_FDS = 60;		/* wsd's fds pass it with ~60 extra sockets */
const WAIT = 15000;		/* ms: the usual deadline for a condition */
const SECRET = 'dashboard-test-secret-0123456789abcdef';

let browser = null;		/* { context, page, close() } */
const polls = [];		/* when the main page asked for /health */
let wsd = null;			/* the wsd running now */
const proxies = [];
const sockets = [];		/* ws clients opened here */

/* ---- Helpers ----------------------------------------------------------- */

function args() {
	return ['--tick', TICK, '--alert-fds', String(ALERT_FDS)];
}

/* Start wsd on port (the same one after a restart), retrying while the
 * old socket lingers. */
async function startOn(port, extra = args()) {
	const end = Date.now() + 15000;
	for (;;) {
		try {
			return await startServer(extra, { listen: '127.0.0.1:' + port });
		} catch (e) {
			if (Date.now() > end)
				throw e;
			await sleep(250);
		}
	}
}

function post(port, group, type, data) {
	return request(port, 'POST', '/api/groups/' + encodeURIComponent(group) +
	    '/events', { type, data });
}

/* Open n WebSockets on url; resolves to them once all are open. */
async function openSockets(WebSocket, url, n) {
	const list = [];
	for (let i = 0; i < n; i++) {
		const ws = new WebSocket(url);
		ws.on('error', () => {});
		list.push(new Promise((res, rej) => {
			ws.once('open', () => res(ws));
			ws.once('error', rej);
		}));
		sockets.push(ws);
	}
	return Promise.all(list);
}

/*
 * n sessions in a few pipelined HTTP connections: every request written
 * at once, the answers counted.  Resolves to the number of 201s.
 */
function createSessions(port, n, conns = 4) {
	const per = Math.ceil(n / conns);
	const one = (from, to) => new Promise((resolve, reject) => {
		const s = net.connect(port, '127.0.0.1');
		let reqs = '', got = 0, text = '';
		const want = to - from;
		for (let i = from; i < to; i++) {
			const body = JSON.stringify({ id: 'bulk-' + i,
			    metadata: { n: i } });
			reqs += 'POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
			    'Content-Type: application/json\r\nContent-Length: ' +
			    body.length + '\r\n\r\n' + body;
		}
		/* Count the status lines as they come; every answer has one. */
		let pos = 0, other = 0;
		s.setEncoding('latin1');
		s.on('data', (d) => {
			text += d;
			for (;;) {
				const i = text.indexOf('HTTP/1.1 ', pos);
				if (i < 0 || i + 12 > text.length)
					break;
				if (text.startsWith('201', i + 9))
					got++;
				else
					other++;
				pos = i + 12;
			}
			if (got + other >= want) {
				s.end();
				resolve(got);
			}
		});
		s.on('error', reject);
		s.setTimeout(60000, () => {
			s.destroy();
			resolve(got);
		});
		s.write(reqs);
	});
	const jobs = [];
	for (let c = 0; c < conns; c++)
		jobs.push(one(c * per, Math.min(n, (c + 1) * per)));
	return Promise.all(jobs).then((l) => l.reduce((a, b) => a + b, 0));
}

/*
 * A TCP proxy on a free port in front of wsd that passes one request per
 * connection (it adds "Connection: close") and answers 502 itself to an
 * upgrade, and with noSse to GET /sse too: what a proxy that does not
 * pass WebSocket, or one that buffers streams, looks like to a browser.
 */
function startProxy(target, { noSse }) {
	const server = net.createServer((client) => {
		let head = Buffer.alloc(0), upstream = null;
		client.on('error', () => {});
		const onData = (d) => {
			head = Buffer.concat([head, d]);
			const end = head.indexOf('\r\n\r\n');
			if (end < 0)
				return;
			client.removeListener('data', onData);
			const text = head.slice(0, end).toString('latin1');
			const refuse = /^upgrade:\s*websocket/im.test(text) ||
			    (noSse && /^GET \/sse[?\s]/.test(text));
			if (refuse) {
				client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0' +
				    '\r\nConnection: close\r\n\r\n');
				return;
			}
			const lines = text.split('\r\n').filter((l) =>
			    !/^(connection|keep-alive):/i.test(l));
			upstream = net.connect(target, '127.0.0.1', () => {
				upstream.write(lines.join('\r\n') + '\r\nConnection: close' +
				    '\r\n\r\n');
				upstream.write(head.slice(end + 4));
				client.pipe(upstream);
				upstream.pipe(client);
			});
			upstream.on('error', () => client.destroy());
			client.on('close', () => upstream.destroy());
		};
		client.on('data', onData);
	});
	proxies.push(server);
	return new Promise((res) => server.listen(0, '127.0.0.1', () =>
	    res(server.address().port)));
}

/* ---- In-page probes ---------------------------------------------------- */

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
			for (const e of r.addedNodes) {
				e.dataset.probe = ++n;
				t.added.push(n);
				t.life[n] = { kind: e.dataset.kind, at: performance.now() };
			}
			for (const e of r.removedNodes) {
				t.removed.push(Number(e.dataset.probe));
				t.life[e.dataset.probe].ms = performance.now() -
				    t.life[e.dataset.probe].at;
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
	return [...document.querySelectorAll('#toasts .toast')].map((e) => ({
		probe: Number(e.dataset.probe),
		kind: e.dataset.kind,
		cls: e.className,
		title: e.querySelector('.title').textContent,
		total: e.querySelector('.total').textContent,
		bg: getComputedStyle(e).backgroundColor,
	}));
}

/* Pixels a canvas has drawn (alpha > 0). */
function inked(id) {
	const c = document.getElementById(id);
	if (!c || c.width === 0)
		return 0;
	const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
	let n = 0;
	for (let i = 3; i < d.length; i += 4)
		if (d[i] > 0)
			n++;
	return n;
}

function rgb(s) {
	const m = /rgba?\((\d+),\s*(\d+),\s*(\d+)/.exec(s || '');
	return m ? m.slice(1, 4).map(Number) : [0, 0, 0];
}
const isGreen = (c) => { const [r, g, b] = rgb(c); return g > r + 40 && g > b + 40; };
const isRed = (c) => { const [r, g, b] = rgb(c); return r > g + 60 && r > b + 60; };

/* A page with helpers bound to it. */
function driver(page) {
	const d = {
		page,
		text: (sel) => page.$eval(sel, (e) => e.textContent.trim())
		    .catch(() => null),
		state: () => page.$eval('#status', (e) => e.dataset.state)
		    .catch(() => null),
		count: (sel) => page.$$eval(sel, (l) => l.length).catch(() => -1),
		visible: (sel) => page.$eval(sel, (e) => !e.hidden &&
		    e.getClientRects().length > 0).catch(() => false),
		toasts: () => page.evaluate(toastsInPage),
		probe: () => page.evaluate(() => window.__probe),
		/* Go to a view by its tab, with the keyboard. */
		async tab(view) {
			await page.focus(`nav a[data-view="${view}"]`);
			await page.keyboard.press('Enter');
			return until(() => d.visible('#view-' + view), WAIT);
		},
	};
	return d;
}

/* How long the page takes to answer a click (ms), or -1 past the
 * deadline: the view must actually change. */
async function answers(d, view, deadlineMs) {
	const t0 = Date.now();
	try {
		await d.page.click(`nav a[data-view="${view}"]`, { timeout: deadlineMs });
	} catch (e) {
		return -1;
	}
	const ok = await until(() => d.visible('#view-' + view), deadlineMs, 20);
	return ok ? Date.now() - t0 : -1;
}

/* ---- Accessibility and screenshots -------------------------------------- */

const axeSource = () => fs.readFileSync(require.resolve('axe-core/axe.min.js'),
    'utf8');

/* axe-core on what the page shows now: its serious and critical
 * violations, as "rule: target" strings. */
async function axe(page) {
	if (!(await page.evaluate(() => typeof window.axe === 'object')))
		await page.evaluate(axeSource());	/* no <script> tag: no CSP */
	const res = await page.evaluate(async () => {
		const r = await window.axe.run(document, { resultTypes:
		    ['violations'] });
		return r.violations.filter((v) => v.impact === 'serious' ||
		    v.impact === 'critical').map((v) => v.id + ': ' + v.nodes
		    .slice(0, 3).map((n) => n.target.join(' ')).join(' | '));
	});
	return res;
}

async function shot(page, name, jpegForDocs) {
	fs.mkdirSync(ARTIFACTS, { recursive: true });
	await page.mouse.move(1, 1);
	await sleep(300);	/* let a toast finish fading in */
	await page.screenshot({ path: path.join(ARTIFACTS, name + '.png') });
	if (jpegForDocs && process.env.DOCS === '1') {
		fs.mkdirSync(DOCS, { recursive: true });
		await page.screenshot({ path: path.join(DOCS, jpegForDocs),
		    type: 'jpeg', quality: 70 });
	}
}

/* ---- 1-2. The page as served; overview and the toasts ------------------ */

async function served(port) {
	const home = await request(port, 'GET', '/');
	check('GET / is 200 text/html', home.status === 200 &&
	    /^text\/html/.test(home.headers['content-type']), home.status);
	const csp = home.headers['content-security-policy'] || '';
	check('GET / has a Content-Security-Policy',
	    /default-src 'none'/.test(csp) && /script-src 'self' 'sha256-/.test(csp),
	    csp);
	const srcs = [...home.body.matchAll(/<script[^>]*\ssrc="([^"]*)"/g)]
	    .map((m) => m[1]);
	check('the only script loaded is /wsd.js', srcs.length === 1 &&
	    srcs[0] === '/wsd.js', srcs);
	check('one inline script block and one style block', (home.body
	    .match(/<script>/g) || []).length === 1 && (home.body
	    .match(/<style>/g) || []).length === 1);
	check('nothing from elsewhere, no innerHTML, no inline handlers or styles',
	    !/<link[^>]+stylesheet|https?:\/\/|innerHTML|\son[a-z]+="|\sstyle="/i
	    .test(home.body));
}

async function overviewAndToasts(d, port, WebSocket) {
	const { page } = d;
	check('status shows "connected"', await until(async () =>
	    (await d.state()) === 'connected' && (await d.text('#status')) ===
	    'connected', 20000), await d.state());
	check('connection count shown (>= 1)', await until(async () =>
	    Number(await d.text('#connections')) >= 1, WAIT),
	    await d.text('#connections'));
	check('session count starts at 0', await until(async () =>
	    (await d.text('#sessions')) === '0', WAIT), await d.text('#sessions'));
	check('groups and uptime filled', await until(async () =>
	    Number(await d.text('#groups')) >= 1 &&
	    /\d+s$/.test(await d.text('#uptime')), WAIT));
	check('message rates shown per second', await until(async () =>
	    /^\d+\.\d\/s$/.test(await d.text('#msg-out')), WAIT),
	    await d.text('#msg-out'));
	check('every overview chart is drawn', await until(async () => {
		for (const id of ['c-connections', 'c-sessions', 'c-groups',
		    'c-msg-in', 'c-msg-out', 'c-uptime'])
			if (await page.evaluate(inked, id) === 0)
				return false;
		return true;
	}, WAIT));

	/* A second monitor client: the connection count follows, no reload. */
	const [mon] = await openSockets(WebSocket, 'ws://127.0.0.1:' + port +
	    '/ws/monitor', 1);
	let monEvents = 0;
	mon.on('message', (m) => {
		if (JSON.parse(m).type === 'session_event')
			monEvents++;
	});
	check('connection count updates without reload', await until(async () =>
	    Number(await d.text('#connections')) >= 2, WAIT),
	    await d.text('#connections'));

	/* One created, one destroyed. */
	let r = await request(port, 'POST', '/api/sessions', { id: 'one' });
	check('POST /api/sessions is 201', r.status === 201, r.status);
	const created = await until(async () =>
	    (await d.toasts()).find((t) => t.kind === 'created'), WAIT);
	check('a created toast appears', !!created);
	if (created) {
		check('created toast text', created.title === '1 session created' &&
		    created.total === 'Total: 1 session', created);
		check('created toast is green', isGreen(created.bg), created.bg);
	}
	check('session count updates to 1', await until(async () =>
	    (await d.text('#sessions')) === '1', WAIT), await d.text('#sessions'));
	await sleep(1000);
	check('created toast still there after ~1 s', created && (await d.toasts())
	    .some((t) => t.probe === created.probe));

	r = await request(port, 'DELETE', '/api/sessions/one');
	check('DELETE /api/sessions/one is 204', r.status === 204, r.status);
	const destroyed = await until(async () =>
	    (await d.toasts()).find((t) => t.kind === 'destroyed'), WAIT);
	check('a destroyed toast appears', !!destroyed);
	if (destroyed) {
		check('destroyed toast text', destroyed.title ===
		    '1 session destroyed' && destroyed.total ===
		    'Total: 0 sessions', destroyed);
		check('destroyed toast is red', isRed(destroyed.bg), destroyed.bg);
		await page.click('#toasts .toast.destroyed button.dismiss');
		check('dismiss button removes the toast at once', await until(
		    async () => !(await d.toasts()).some((t) =>
		    t.probe === destroyed.probe), 3000));
	}
	check('toasts are announced (aria-live)', await page.$eval('#toasts',
	    (e) => e.getAttribute('aria-live')) === 'polite');
	const gone = created && await until(async () => !(await d.toasts())
	    .some((t) => t.probe === created.probe), WAIT);
	check('created toast auto-dismissed', gone);
	if (gone) {
		const life = (await d.probe()).life[created.probe].ms;
		check('auto-dismiss after ~5 s', life >= 4500 && life < 9000,
		    Math.round(life) + ' ms');
	}

	/* Five creations in separate ticks: never more than three toasts. */
	const firstBurst = (await d.probe()).added.length + 1;
	let maxSeen = 0, sampling = true;
	const sampler = (async () => {
		while (sampling) {
			maxSeen = Math.max(maxSeen, await d.count('#toasts .toast'));
			await sleep(50);
		}
	})();
	for (let i = 1; i <= 5; i++) {
		r = await request(port, 'POST', '/api/sessions', { id: 'b' + i });
		if (r.status !== 201)
			check('POST b' + i, false, r.status);
		/* Next one in a later tick, so each gets its own event. */
		await until(async () => (await d.text('#sessions')) === String(i),
		    WAIT, 20);
	}
	await sleep(200);
	const burst = await d.toasts();
	sampling = false;
	await sampler;
	const pr = await d.probe();
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

	/* Five deletions: more than ten events in all, the list keeps ten. */
	for (let i = 1; i <= 5; i++) {
		await request(port, 'DELETE', '/api/sessions/b' + i);
		await until(async () => (await d.text('#sessions')) ===
		    String(5 - i), WAIT, 20);
	}
	await until(async () => monEvents >= 12, 5000);
	const evs = await until(async () => {
		const l = await page.$$eval('#events li', (els) => els.map((e) =>
		    ({ kind: e.dataset.kind, seq: Number(e.dataset.seq),
		    text: e.textContent })));
		return l.length === Math.min(10, monEvents) ? l : null;
	}, WAIT) || [];
	check('event list keeps the last 10 of ' + monEvents, evs.length === 10,
	    evs.length);
	check('event list is newest first', evs.length > 0 &&
	    evs[0].kind === 'destroyed' && evs.every((e, i) =>
	    i === 0 || e.seq < evs[i - 1].seq), evs.map((e) => e.seq));
	check('event entry reads "\u22121 destroyed 1 \u2192 0 b5"', evs.length > 0 &&
	    /\u22121 destroyed\s*1 \u2192 0\s*b5$/.test(evs[0].text), evs[0]);
	mon.close();
}

/* ---- 3-4. Sessions, and one session's timeline --------------------------- */

async function sessions(d, port) {
	const { page } = d;
	for (const [id, meta] of [['agent-1', { agent: 'a7', user: 'ada',
	    model: 'large' }], ['agent-2', { agent: 'b3', user: 'bob' }]]) {
		const r = await request(port, 'POST', '/api/sessions',
		    { id, metadata: meta });
		check('seed session ' + id, r.status === 201, r.status);
	}
	/* Some history before the page opens the session. */
	await post(port, 'session:agent-1', 'agent_started', { agent: 'a7' });
	await post(port, 'session:agent-1', 'agent_thinking', {});
	await post(port, 'session:agent-1', 'chat.message',
	    { from: 'ada', text: 'find the failing test' });

	check('sessions tab opens with the keyboard', await d.tab('sessions'));
	const row = (id) => page.$eval(`#sessions-table tr[data-id="${id}"]`,
	    (e) => e.textContent).catch(() => null);
	check('the table lists the sessions with their metadata', await until(
	    async () => /"user":"ada"/.test(await row('agent-1') || '') &&
	    /"agent":"b3"/.test(await row('agent-2') || ''), WAIT),
	    await row('agent-1'));
	check('the pager counts them', /Sessions 1\u20132 of 2/.test(
	    await d.text('#sessions-pager') || ''), await d.text('#sessions-pager'));

	/* Live: created and destroyed over HTTP, no reload. */
	const loads = await page.evaluate(() => performance.getEntriesByType(
	    'navigation').length);
	await request(port, 'POST', '/api/sessions', { id: 'live-1',
	    metadata: { note: 'new' } });
	check('a created session appears without reload', await until(async () =>
	    (await row('live-1')) !== null, WAIT));
	await request(port, 'DELETE', '/api/sessions/live-1');
	check('a destroyed session disappears without reload', await until(
	    async () => (await row('live-1')) === null, WAIT));
	check('...and the page was not reloaded', loads === await page.evaluate(
	    () => performance.getEntriesByType('navigation').length));

	/* One session's page. */
	await page.click('#sessions-table a[href="#session/agent-1"]');
	check('session page opens', await until(() => d.visible('#view-session'),
	    WAIT));
	check('its metadata is shown', await until(async () =>
	    /"model": "large"/.test(await d.text('#session-meta') || ''), WAIT),
	    await d.text('#session-meta'));
	check('the history comes first', await until(async () =>
	    (await d.count('#timeline li.ev')) === 3, WAIT),
	    await d.count('#timeline li.ev'));

	const g = 'session:agent-1';
	await post(port, g, 'tool_executing', { tool: 'grep' });
	check('live: tool executing with the tool\'s name', await until(async () =>
	    /Now: tool executing \u00b7 grep for/.test(await d.text('#life-now')),
	    WAIT), await d.text('#life-now'));
	await sleep(400);
	await post(port, g, 'tool_completed', { tool: 'grep' });
	await post(port, g, 'query', { id: 'q1', text: 'Which test fails?' });
	check('a query shows a typing indicator', await until(async () =>
	    (await d.count('#timeline li.typing')) === 1, WAIT));
	check('...announced as "answer being typed"', /answer being typed/.test(
	    await d.text('#timeline li.typing') || ''));
	await post(port, g, 'query_response', { query_id: 'q1',
	    text: 'test_sessions.py, line 40' });
	check('the response replaces the typing indicator', await until(
	    async () => (await d.count('#timeline li.typing')) === 0 &&
	    /test_sessions\.py, line 40/.test(await d.text('#timeline') || ''),
	    WAIT));
	await post(port, g, 'custom.thing', { nested: { a: [1, 2, 3] } });
	await post(port, g, 'task.update', { status: 'running tests' });
	await post(port, g, 'agent_completed', {});
	check('completed: the run\'s length is shown', await until(async () =>
	    /^Agent completed after \d/.test(await d.text('#life-now')), WAIT),
	    await d.text('#life-now'));
	const steps = await page.$$eval('#life-steps li', (l) => l.map((e) =>
	    e.textContent));
	check('lifecycle: the states in order, with durations', steps.length === 5 &&
	    /^started\d/.test(steps[0]) && /^thinking\d/.test(steps[1]) &&
	    /^tool executing \u00b7 grep\d+ ms|^tool executing \u00b7 grep\d/.test(
	    steps[2]) && /^tool completed \u00b7 grep/.test(steps[3]) &&
	    /^completed$/.test(steps[4]), steps);
	const grepMs = /grep(\d+) ms/.exec(steps[2] || '');
	check('tool executing lasted about as long as it did (>= 300 ms)',
	    grepMs === null ? /grep\d+\.\d s/.test(steps[2]) : Number(grepMs[1]) >= 300,
	    steps[2]);
	check('chat message as a bubble with its author', /ada\s*find the failing/
	    .test(await d.text('#timeline li[data-type="chat.message"]') || ''));
	check('task.update has its summary line', /task\.update running tests/
	    .test(await d.text('#timeline li[data-type="task.update"]') || ''));
	const other = '#timeline li[data-type="custom.thing"] details';
	check('an unknown event is collapsed JSON', await page.$eval(other,
	    (e) => !e.open && e.querySelector('summary').textContent ===
	    'custom.thing').catch(() => false));
	await page.click(other + ' summary');
	check('...that opens to show the data', await until(async () =>
	    page.$eval(other, (e) => e.open && /"nested"/.test(
	    e.querySelector('pre').textContent) && e.querySelector('pre')
	    .getClientRects().length > 0).catch(() => false), WAIT));
}

/* ---- 5. Groups, the tail, connections ------------------------------------- */

async function groups(d, port) {
	const { page } = d;
	check('groups tab opens with the keyboard', await d.tab('groups'));
	const row = (g) => page.$eval(`#groups-table tr[data-group="${g}"]`,
	    (e) => [...e.cells].map((c) => c.textContent.trim())).catch(() => null);
	const r1 = await until(async () => {
		const r = await row('session:agent-1');
		return r && r[4] !== '\u2026' ? r : null;
	}, WAIT);
	check('group row: name, subscribers, last seq, epoch, history kept',
	    r1 && r1[0] === 'session:agent-1' && r1[2] === '10' &&
	    /^[0-9a-f]{8}$/.test(r1[3]) && r1[4] === '10', r1);
	check('monitor has the page as a subscriber', Number((await row('monitor')
	    || [])[1]) >= 1, await row('monitor'));

	await post(port, 'chat:room', 'chat.message', { text: 'before' });
	await page.fill('#tail-group', 'chat:room');
	await page.press('#tail-group', 'Enter');
	check('the tail shows the last events kept', await until(async () =>
	    /before/.test(await d.text('#tail') || ''), WAIT));
	for (let i = 1; i <= 3; i++)
		await post(port, 'chat:room', 'chat.message', { text: 'live-' + i });
	check('the tail is live, newest first', await until(async () =>
	    /^#4/.test(await d.text('#tail li:first-child') || ''), WAIT),
	    await d.text('#tail li:first-child'));
	await page.click('#tail-pause');
	check('pause: the button says Resume and is pressed', await page.$eval(
	    '#tail-pause', (e) => e.textContent === 'Resume' &&
	    e.getAttribute('aria-pressed') === 'true'));
	for (let i = 4; i <= 6; i++)
		await post(port, 'chat:room', 'chat.message', { text: 'live-' + i });
	check('paused: new events wait, counted', await until(async () =>
	    /Paused: chat:room .*3 waiting/.test(await d.text('#tail-msg')), WAIT),
	    await d.text('#tail-msg'));
	check('paused: the list does not move', /^#4/.test(
	    await d.text('#tail li:first-child') || ''));
	await page.click('#tail-pause');
	check('resume: the waiting events are shown', await until(async () =>
	    /^#7/.test(await d.text('#tail li:first-child') || ''), WAIT),
	    await d.text('#tail li:first-child'));

	check('connections tab opens with the keyboard', await d.tab('connections'));
	const conns = await until(async () => {
		const l = await page.$$eval('#connections-table tbody tr', (rows) =>
		    rows.map((e) => [...e.cells].map((c) => c.textContent.trim())));
		return l.length >= 1 ? l : null;
	}, WAIT) || [];
	const mine = conns.find((c) => /monitor/.test(c[4]));
	check('connections: id, kind, peer, subject, groups, queued, age, rtt',
	    mine && /^\d+$/.test(mine[0]) && mine[1] === 'websocket' &&
	    /^127\.0\.0\.1:\d+$/.test(mine[2]) && mine[3] === '\u2013' &&
	    /chat:room/.test(mine[4]) && /B$/.test(mine[5]) && /s$/.test(mine[6]),
	    conns);
}

/* ---- 6. Host figures and alerts ------------------------------------------ */

async function host(d, port, WebSocket) {
	const { page } = d;
	check('host tab opens with the keyboard', await d.tab('host'));
	check('host figures shown', await until(async () =>
	    /%$/.test(await d.text('#h-cpu')) && /B$/.test(await d.text('#h-rss')) &&
	    /^\d+$/.test(await d.text('#h-fds')) && /%$/.test(await d.text('#h-mem')),
	    WAIT), [await d.text('#h-cpu'), await d.text('#h-rss')]);
	check('host charts drawn', await until(async () =>
	    (await page.evaluate(inked, 'c-fds')) > 0 &&
	    (await page.evaluate(inked, 'c-rss')) > 0, WAIT));

	/* Past --alert-fds: raised; back: cleared. */
	const url = 'ws://127.0.0.1:' + port + '/ws/load';
	const many = await openSockets(WebSocket, url, ALERT_FDS);
	const raised = await until(async () => (await d.toasts()).find((t) =>
	    t.kind === 'alert'), 20000);
	check('an alert raises a toast', raised && /^Alert raised: fds$/.test(
	    raised.title), raised);
	check('...listed as raised, not acknowledged', await until(async () =>
	    /fds\s*raised/.test(await d.text('#alerts-table tbody') || '') &&
	    (await d.text('#alert-badge')) === '1', WAIT),
	    await d.text('#alerts-table tbody'));
	for (const ws of many)
		ws.close();
	check('the clear comes in the same row', await until(async () =>
	    (await d.count('#alerts-table tbody tr')) === 1 &&
	    /fds\s*cleared/.test(await d.text('#alerts-table tbody') || ''), 20000),
	    await d.text('#alerts-table tbody'));
	await shot(page, 'host-light', 'dashboard-host.jpg');
	await page.click('#alerts-table button');
	check('acknowledged: the badge goes', await until(async () =>
	    !(await d.visible('#alert-badge')) &&
	    /yes$/.test(await d.text('#alerts-table tbody tr') || ''), WAIT));
	await page.reload({ waitUntil: 'load' });
	check('after a reload: the alert is read back, still acknowledged',
	    await until(async () => /fds\s*cleared/.test(await d.text(
	    '#alerts-table tbody') || '') && !(await d.visible('#alert-badge')),
	    WAIT), await d.text('#alerts-table tbody'));
}

/* ---- 7. The publish console ---------------------------------------------- */

async function publishConsole(d) {
	const { page } = d;
	check('publish tab opens with the keyboard', await d.tab('publish'));
	await page.fill('#pub-group', 'bad group!');
	await page.fill('#pub-data', '{"x": ');
	await page.click('#pub-form button[type=submit]');
	check('a bad group name is refused before sending', await until(async () =>
	    /1 to 64/.test(await d.text('#pub-group-err')) &&
	    (await page.$eval('#pub-group', (e) => e.getAttribute('aria-invalid')))
	    === 'true', WAIT));
	check('bad JSON is refused before sending', /^Not JSON/.test(
	    await d.text('#pub-data-err')), await d.text('#pub-data-err'));
	check('nothing was sent', /^Not sent/.test(await d.text('#pub-result')));
	await page.fill('#pub-group', 'chat:room');
	await page.fill('#pub-type', 'chat.message');
	await page.fill('#pub-data', '{"from":"console","text":"from the page"}');
	await page.click('#pub-form button[type=submit]');
	check('a valid publish is answered with its seq', await until(async () =>
	    /^Published to chat:room: seq 8, delivered to \d+ subscriber/.test(
	    await d.text('#pub-result')), WAIT), await d.text('#pub-result'));
}

/* ---- 8. 1,000 events/s into the tailed group ------------------------------ */

async function burst(d, port, WebSocket) {
	const { page } = d;
	await d.tab('groups');
	await page.fill('#tail-group', 'load:burst');
	await page.press('#tail-group', 'Enter');
	await until(async () => /Tailing load:burst/.test(
	    await d.text('#tail-msg')), WAIT);
	const [pub] = await openSockets(WebSocket, 'ws://127.0.0.1:' + port +
	    '/ws/publisher', 1);
	let sent = 0;
	/* 1,000 a second, in batches: as many as the clock says are due. */
	const pump = (async () => {
		const t0 = Date.now();
		while (Date.now() - t0 < 5000) {
			const due = Date.now() - t0;	/* one per ms */
			while (sent < due)
				pub.send(JSON.stringify({ type: 'publish', group: 'load:burst',
				    event: 'tick', data: { n: sent++, pad: 'x'.repeat(40) } }));
			await sleep(20);
		}
	})();
	await sleep(1500);
	/* Input while the events pour in: typing and switching views. */
	const ms1 = await answers(d, 'publish', 10000);
	check('under load: a click switches view', ms1 >= 0, ms1);
	await page.fill('#pub-type', '');
	await page.type('#pub-type', 'typed-under-load', { timeout: 10000 });
	check('under load: typing in the console takes effect', await until(
	    async () => (await page.$eval('#pub-type', (e) => e.value)) ===
	    'typed-under-load', 10000));
	const ms2 = await answers(d, 'groups', 10000);
	check('under load: back to the tail', ms2 >= 0, ms2);
	await pump;
	console.log(`# sent ${sent} events in about 5 s; view switches took ` +
	    `${ms1} and ${ms2} ms`);
	check('the tail counted them all', await until(async () => {
		const m = /([\d,]+) event\(s\) live/.exec(await d.text('#tail-msg'));
		return m && Number(m[1].replace(/,/g, '')) >= sent;
	}, 20000), await d.text('#tail-msg'));
	check('the tail keeps at most 200', (await d.count('#tail li')) <= 200,
	    await d.count('#tail li'));
	pub.close();
}

/* ---- 9. 10,000 sessions ------------------------------------------------------ */

async function tenThousand(d, port) {
	const { page } = d;
	const t0 = Date.now();
	const made = await createSessions(port, 10000);
	check('10,000 sessions created (pipelined)', made === 10000, made);
	console.log(`# 10,000 sessions in ${Date.now() - t0} ms`);
	await d.tab('sessions');
	check('the table counts 10,000+', await until(async () =>
	    /of 10,00\d$/.test(await d.text('#sessions-pager .range') || ''), 20000),
	    await d.text('#sessions-pager .range'));
	check('one page of rows, not all', (await d.count(
	    '#sessions-table tbody tr')) === 50);
	const t1 = Date.now();
	await page.click('#sessions-pager button[aria-label="Last page"]');
	check('the last page answers', await until(async () =>
	    /^Sessions 10,00\d\u201310,00\d of 10,00\d$/.test(await d.text(
	    '#sessions-pager .range')) && (await d.count(
	    '#sessions-table tr[data-id^="bulk-"]')) >= 1, 10000),
	    await d.text('#sessions-pager .range'));
	console.log(`# last page in ${Date.now() - t1} ms`);
	await page.fill('#sessions-pager input', '100');
	await page.press('#sessions-pager input', 'Enter');
	check('a page number typed answers', await until(async () =>
	    /Sessions 4,951\u20135,000 of/.test(await d.text(
	    '#sessions-pager .range') || ''), 10000),
	    await d.text('#sessions-pager .range'));
	const ms = await answers(d, 'overview', 10000);
	check('with 10,000 sessions the page answers a click', ms >= 0, ms);
	check('the sessions card says 10,00x', await until(async () =>
	    /^10,00\d$/.test(await d.text('#sessions')), WAIT),
	    await d.text('#sessions'));
}

/* ---- 10. Accessibility and screenshots ------------------------------------- */

const VIEWS = ['overview', 'sessions', 'session/agent-1', 'groups',
    'connections', 'host', 'publish'];

async function a11yAndShots(d, base, chromium) {
	const { page } = d;
	for (const scheme of ['light', 'dark']) {
		await page.emulateMedia({ colorScheme: scheme });
		for (const v of VIEWS) {
			await page.goto(base + '/#' + v, { waitUntil: 'load' });
			await until(() => d.visible('#view-' + v.split('/')[0]), WAIT);
			await sleep(v === 'overview' ? 1200 : 800);
			const bad = await axe(page);
			check(`axe: no serious or critical violations (${v}, ${scheme})`,
			    bad.length === 0, bad);
			const name = v.replace('/', '-') + '-' + scheme;
			await shot(page, name, scheme === 'light' ? {
				overview: 'dashboard-overview.jpg',
				'session/agent-1': 'dashboard-session.jpg',
				groups: 'dashboard-groups.jpg' }[v] : v === 'overview' ?
			    'dashboard-dark.jpg' : undefined);
		}
	}
	await page.emulateMedia({ colorScheme: 'light' });

	/* A phone. */
	const phone = await openBrowser(chromium, { viewport: { width: 390,
	    height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
	try {
		const p = phone.page;
		for (const v of ['overview', 'session/agent-1']) {
			await p.goto(base + '/#' + v, { waitUntil: 'load' });
			await sleep(1200);
			const wide = await p.evaluate(() =>
			    document.documentElement.scrollWidth);
			check(`phone: no sideways scrolling (${v})`, wide <= 390, wide);
			await shot(p, 'phone-' + v.replace('/', '-'),
			    v === 'overview' ? 'dashboard-phone.jpg' : undefined);
			if (v === 'overview')
				check('phone: the cards are two a row', await p.$$eval(
				    '#cards .card', (l) => l.length > 2 &&
				    l[0].getBoundingClientRect().top ===
				    l[1].getBoundingClientRect().top &&
				    l[0].getBoundingClientRect().top <
				    l[2].getBoundingClientRect().top));
		}
		const bad = await axe(p);
		check('axe on a phone: no serious or critical violations',
		    bad.length === 0, bad);
	} finally {
		await phone.close();
	}
}

/* ---- 11. Restart ---------------------------------------------------------- */

async function restart(d, port) {
	const { page } = d;
	await page.goto('http://127.0.0.1:' + port + '/#overview',
	    { waitUntil: 'load' });
	await page.evaluate(installProbe);
	await until(async () => (await d.state()) === 'connected', WAIT);
	await request(port, 'POST', '/api/sessions', { id: 'before-restart' });
	check('an event from before the restart is listed', await until(async () =>
	    /before-restart/.test(await d.text('#events') || ''), WAIT));
	const killedAt = Date.now();
	await wsd.kill();
	check('wsd gone: "reconnecting" with a "Retry now" button', await until(
	    async () => (await d.probe()).states.includes('reconnecting') &&
	    await d.visible('#retry'), 20000), (await d.probe()).states);
	check('wsd gone: the page polls /health', await until(() =>
	    polls.some((t) => t > killedAt), 20000), polls.length);
	await shot(page, 'reconnecting');
	wsd = await startOn(port);
	await page.click('#retry').catch(() => {});
	check('back: "connected" again', await until(async () =>
	    (await d.state()) === 'connected', 25000), await d.state());
	const pollsAtConnect = polls.length;
	check('"server restarted" is shown', await until(() =>
	    d.visible('#restart'), WAIT));
	check('...saying so', /wsd restarted/.test(await d.text('#restart-text')),
	    await d.text('#restart-text'));
	check('old events are marked under a divider', await until(async () =>
	    page.$eval('#events', (l) => l.querySelector('li.divider') !== null &&
	    [...l.querySelectorAll('li')].filter((e) =>
	    /before-restart/.test(e.textContent)).every((e) =>
	    e.classList.contains('stale'))), WAIT));
	await shot(page, 'restarted');
	await page.click('#restart-dismiss');
	check('the notice can be dismissed', await until(async () =>
	    !(await d.visible('#restart')), 5000));
	await sleep(4000);	/* a poll was due every 3 s */
	check('polling stops once reconnected', polls.length <= pollsAtConnect + 1,
	    polls.length - pollsAtConnect + ' polls after reconnecting');
}

/* ---- 12. Fallback and polling through proxies ------------------------------- */

async function throughProxy(chromium, port, noSse, WebSocket) {
	const pport = await startProxy(port, { noSse });
	const b = await openBrowser(chromium, { viewport: { width: 1280,
	    height: 800 } });
	const what = noSse ? 'polling' : 'fallback';
	try {
		const d = driver(b.page);
		const errors = [];
		b.page.on('pageerror', (e) => errors.push(e.message));
		await b.page.goto('http://127.0.0.1:' + pport + '/', { waitUntil: 'load' });
		check(`${what}: the state says so`, await until(async () =>
		    (await d.state()) === what, 30000), await d.state());
		if (!noSse)
			check('fallback: labelled "fallback (SSE)"',
			    (await d.text('#status')) === 'fallback (SSE)');
		const before = Number(await d.text('#sessions'));
		await request(port, 'POST', '/api/sessions', { id: 'via-' + what });
		check(`${what}: the sessions card follows`, await until(async () =>
		    Number(await d.text('#sessions')) === before + 1, WAIT),
		    [before, await d.text('#sessions')]);
		const conns = Number(await d.text('#connections'));
		const extra = await openSockets(WebSocket, 'ws://127.0.0.1:' + port +
		    '/ws/extra', 2);
		check(`${what}: the connections card follows`, await until(async () =>
		    Number(await d.text('#connections')) === conns + 2, WAIT),
		    [conns, await d.text('#connections')]);
		for (const ws of extra)
			ws.close();
		check(`${what}: every card filled`, await until(async () => {
			for (const id of ['connections', 'sessions', 'groups', 'msg-in',
			    'msg-out', 'uptime'])
				if (!/\d/.test(await d.text('#' + id)))
					return false;
			return true;
		}, WAIT), await b.page.$$eval('#cards dd[id]', (l) => l.map((e) =>
		    e.id + '=' + e.textContent)));
		if (noSse)
			check('polling: cards say where they came from', await until(
			    async () => /Polled over HTTP/.test(await d.text(
			    '#cards-source')) && (await b.page.$eval('#sessions',
			    (e) => e.dataset.source)) === 'poll', WAIT));
		check(`${what}: a "Retry now" button`, await d.visible('#retry'));
		check(`${what}: no "restarted" notice (wsd did not restart)`,
		    !(await d.visible('#restart')));
		await shot(b.page, what);
		check(`${what}: no page errors`, errors.length === 0, errors);
	} finally {
		await b.close();
	}
}

/* ---- 13. Tokens, and malformed events --------------------------------------- */

function mint(groups) {
	const r = spawnSync(WSD, ['token', '--secret', SECRET, '--sub', 'viewer',
	    '--groups', groups.join(','), '--ttl', '600'], { encoding: 'utf8' });
	return r.stdout.trim();
}

async function tokens(chromium) {
	const srv = await startServer(['--tick', TICK, '--token-secret', SECRET]);
	const b = await openBrowser(chromium, { viewport: { width: 1280,
	    height: 800 } });
	try {
		const token = mint(['monitor', 'session:*']);
		check('wsd token mints a token', /^[\w-]+\.[\w-]+\.[\w-]+$/.test(token),
		    token);
		const d = driver(b.page);
		const errors = [];
		b.page.on('pageerror', (e) => errors.push(e.message));
		await b.page.goto('http://127.0.0.1:' + srv.port + '/#token=' + token,
		    { waitUntil: 'load' });
		check('tokens: connected with the token', await until(async () =>
		    (await d.state()) === 'connected', 20000), await d.state());
		check('tokens: the token leaves the address bar', !/token=/.test(
		    b.page.url()), b.page.url());
		await d.tab('groups');
		check('tokens: a list not granted says so', await until(async () =>
		    /does not allow the group list/.test(await d.text('#groups-msg')),
		    WAIT), await d.text('#groups-msg'));
		await b.page.fill('#tail-group', 'chat:secret');
		await b.page.press('#tail-group', 'Enter');
		check('tokens: a group not granted is not subscribed', /does not grant/
		    .test(await d.text('#tail-msg')), await d.text('#tail-msg'));
		await d.tab('publish');
		await b.page.fill('#pub-group', 'session:x');
		await b.page.click('#pub-form button[type=submit]');
		check('tokens: a refused publish is reported', await until(async () =>
		    /^Refused: forbidden/.test(await d.text('#pub-result')), WAIT),
		    await d.text('#pub-result'));
		check('tokens: still connected after the refusals',
		    (await d.state()) === 'connected', await d.state());
		check('tokens: no page errors', errors.length === 0, errors);
	} finally {
		await b.close();
		await srv.stop();
	}
}

/* With --api-key: the connection list asks for the key in the page, and
 * keeps it for the tab. */
async function apiKey(chromium) {
	const KEY = 'dashboard-test-key';
	const srv = await startServer(['--tick', TICK, '--api-key', KEY]);
	const b = await openBrowser(chromium, { viewport: { width: 1280,
	    height: 800 } });
	try {
		const d = driver(b.page);
		await b.page.goto('http://127.0.0.1:' + srv.port + '/#connections',
		    { waitUntil: 'load' });
		check('api key: the page asks for it', await until(() =>
		    d.visible('#key-form'), WAIT));
		check('api key: the view says why', /needs wsd's API key/.test(
		    await d.text('#connections-msg')), await d.text('#connections-msg'));
		const bad = await axe(b.page);
		check('axe with the key form: no serious or critical violations',
		    bad.length === 0, bad);
		await b.page.fill('#key-input', KEY);
		await b.page.press('#key-input', 'Enter');
		check('api key: with it the connections are listed', await until(
		    async () => (await d.count('#connections-table tbody tr')) >= 1 &&
		    !(await d.visible('#key-form')), WAIT),
		    await d.text('#connections-msg'));
		check('api key: kept in sessionStorage for the tab', await b.page
		    .evaluate(() => sessionStorage.getItem('wsd.apiKey')) === KEY);
		await b.page.reload({ waitUntil: 'load' });
		check('api key: still used after a reload', await until(async () =>
		    (await d.count('#connections-table tbody tr')) >= 1, WAIT));
	} finally {
		await b.close();
		await srv.stop();
	}
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
		{ type: 'realtime_update', data: { connections: 'x', host: 5 } },
		{ type: 'system_alert', data: { id: 'x' } },
	];
	const page = await context.newPage();
	await page.route(/\/api\/groups\/monitor\/events/, (r) => r.fulfill({
	    status: 404, body: '{}' }));
	await page.routeWebSocket(/\/ws\/monitor/, (ws) => {
		ws.onMessage(() => {});
		ws.send(JSON.stringify({ type: 'subscribed', group: 'monitor',
		    epoch: '0000abcd', seq: 0 }));
		setTimeout(() => bad.forEach((m, i) => ws.send(JSON.stringify({
		    ...m, group: 'monitor', seq: i + 1,
		    timestamp: '2026-11-28T10:00:00.000Z' }))), 300);
	});
	const errors = [];
	page.on('pageerror', (e) => errors.push(e.message));
	await page.goto(base + '/', { waitUntil: 'load' });
	const shown = await until(async () => (await page.$$eval('#events li',
	    (l) => l.length)) === 3, WAIT);
	check('malformed session events are listed', shown);
	const body = await page.evaluate(() => document.body.innerText);
	check('malformed events render without NaN or undefined',
	    !/NaN|undefined|\[object/.test(body), body.slice(0, 400));
	check('malformed events raise no page error', errors.length === 0, errors);
	await page.close();
}

/* ---- The test ---------------------------------------------------------------- */

async function main() {
	const chromium = needChromium();
	const WebSocket = need('ws');
	need('axe-core');

	wsd = await startServer(args());
	const port = wsd.port;
	const base = 'http://127.0.0.1:' + port;
	await served(port);

	browser = await openBrowser(chromium, { viewport: { width: 1280,
	    height: 800 } });
	const page = browser.page;
	const d = driver(page);
	const pageErrors = [], cspErrors = [];
	page.on('pageerror', (e) => pageErrors.push(e.message));
	page.on('request', (r) => {
		if (r.url().endsWith('/health'))
			polls.push(Date.now());
	});
	page.on('console', (m) => {
		if (/Content.Security.Policy/i.test(m.text()))
			cspErrors.push(m.text());
	});
	await page.goto(base + '/', { waitUntil: 'load' });
	await page.evaluate(installProbe);

	await overviewAndToasts(d, port, WebSocket);
	check('no polling while connected', polls.length === 0, polls.length);
	await sessions(d, port);
	await groups(d, port);
	await host(d, port, WebSocket);
	await publishConsole(d);
	await burst(d, port, WebSocket);
	await tenThousand(d, port);
	await a11yAndShots(d, base, chromium);
	check('no page errors', pageErrors.length === 0, pageErrors);
	check('no Content-Security-Policy violations', cspErrors.length === 0,
	    cspErrors);
	await restart(d, port);
	await throughProxy(chromium, wsd.port, false, WebSocket);
	await throughProxy(chromium, wsd.port, true, WebSocket);
	await defensive(page.context(), 'http://127.0.0.1:' + wsd.port);
	await tokens(chromium);
	await apiKey(chromium);
	check('no page errors at the end', pageErrors.length === 0, pageErrors);
}

const watchdog = setTimeout(() => {	/* wsdtest kills wsd on exit */
	check('test timed out after 480 s', false);
	done();
}, 480000);

(async () => {
	const t0 = Date.now();
	try {
		await main();
	} catch (e) {
		check('test ran to the end', false, e.stack || String(e));
	} finally {
		for (const ws of sockets)
			try { ws.terminate(); } catch (e) { /* gone */ }
		for (const p of proxies)
			p.close();
		if (browser)
			await browser.close();
		if (wsd)
			await wsd.kill();
		clearTimeout(watchdog);
	}
	console.log('# ' + ((Date.now() - t0) / 1000).toFixed(1) + ' s');
	done();
})();
