/*
 * test_browser_client.js - the client half in a real browser.
 *
 * Headless Chromium (Debian's, driven by playwright-core) opens a page
 * served by this test on its own port, so the page is another origin than
 * wsd, allowed with --allow-origin.  The page loads /wsd.js from wsd
 * (through a small proxy of this test, which can refuse upgrades, freeze
 * a connection or cut every one) and subscribes to three groups.  Then:
 *
 *   - live events of the three groups;
 *   - wsd killed (SIGKILL) and started again on the same port: each group
 *     reported as a reset with its old and new epoch, then the new stream;
 *   - one group's history outrun while the page's link is frozen: the gap
 *     reported with its exact range, then what is kept;
 *   - upgrades refused by the proxy: the page falls back to SSE (events
 *     still arrive, a publish from the page still goes through, over a
 *     cross-origin POST), then goes back to WebSocket when upgrades pass;
 *
 * and throughout, every event wsd acknowledged (202 with a seq) reaches
 * the page exactly once or lies inside a reported gap.  Also, in the same
 * browser: native EventSource across origins, resumed by Last-Event-ID
 * after the proxy cuts it; fetch of history and a publish with preflight
 * from the allowed origin, and the same refused to an origin not listed.
 *
 *	WSD=./wsd node test/test_browser_client.js
 */
'use strict';
const fs = require('fs');
const http = require('http');
const net = require('net');
const path = require('path');
const { DEADLINE, check, deadline, done, needChromium, openBrowser, request,
    startServer, until } = require('./wsdtest');

/* ---- a proxy in front of wsd ------------------------------------------ */

/*
 * Every connection is piped to wsd, but: with blockUpgrade, a request that
 * asks for a WebSocket upgrade gets 403 (as a proxy that strips Upgrade
 * would make it fail); freeze() stops piping (bytes wait in the kernel),
 * cut() resets every connection.
 */
function proxy(target) {
	const state = { blockUpgrade: false, frozen: false, socks: new Set(),
	    upgrades: 0, refused: 0 };
	const server = net.createServer((client) => {
		let head = Buffer.alloc(0), up = null;
		state.socks.add(client);
		client.on('close', () => state.socks.delete(client));
		client.on('error', () => {});
		const onData = (d) => {
			head = Buffer.concat([head, d]);
			if (head.indexOf('\r\n\r\n') < 0)
				return;
			client.removeListener('data', onData);
			const upgrade = /^upgrade:\s*websocket/im.test(
			    head.toString('latin1'));
			if (upgrade && state.blockUpgrade) {
				state.refused++;
				client.end('HTTP/1.1 403 Forbidden\r\n' +
				    'Content-Length: 0\r\nConnection: close\r\n\r\n');
				return;
			}
			if (upgrade)
				state.upgrades++;
			up = net.connect(target.port, '127.0.0.1');
			state.socks.add(up);
			up.on('close', () => { state.socks.delete(up); client.destroy(); });
			up.on('error', () => client.destroy());
			client.on('close', () => up.destroy());
			up.write(head);
			const pipe = (from, to) => from.on('data', (b) => {
				if (!to.write(b))
					from.pause(), to.once('drain', () => from.resume());
			});
			pipe(client, up);
			pipe(up, client);
			if (state.frozen)
				client.pause(), up.pause();
		};
		client.on('data', onData);
	});
	return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
		state.port = server.address().port;
		state.freeze = () => {
			state.frozen = true;
			for (const s of state.socks) s.pause();
		};
		state.cut = () => {
			state.frozen = false;
			for (const s of state.socks) s.destroy();
		};
		state.close = () => { state.cut(); server.close(); };
		resolve(state);
	}));
}

/* A page origin of its own: serves one HTML page, html() as it is now. */
function pageServer(html) {
	const server = http.createServer((req, res) => {
		res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
		res.end(html());
	});
	return new Promise((resolve) => server.listen(0, '127.0.0.1',
	    () => resolve({ port: server.address().port,
	    close: () => server.close() })));
}

/* ---- what the page runs ----------------------------------------------- */

/* In the page: one Wsd on the proxy, three groups, everything recorded in
 * window.got. */
function pageStart([base, groups]) {
	window.got = { events: [], gaps: [], resets: [], states: [] };
	const wsd = new Wsd(base, { backoff: { base: 100, cap: 1000 },
	    fallbackAfter: 2, pingInterval: 1000, deadAfter: 4000 });
	window.wsd = wsd;
	wsd.on('state', (s) => window.got.states.push(s));
	for (const g of groups) {
		const sub = wsd.subscribe(g, (e) => window.got.events.push({
		    group: e.group, seq: e.seq, epoch: sub.position.epoch,
		    type: e.type }), {
			onGap: (x) => window.got.gaps.push(x),
			onReset: (x) => window.got.resets.push(x),
		});
	}
	return true;
}

/* ---- the test --------------------------------------------------------- */

const GROUPS = ['alpha', 'beta', 'session:s7'];

async function main() {
	const chromium = needChromium();
	/* The page's origin is known before wsd starts (--allow-origin), the
	 * proxy's port (in the page) after. */
	const target = {};
	const page = await pageServer(() => '<!doctype html><title>t</title>' +
	    `<script src="http://127.0.0.1:${target.proxy}/wsd.js"></script>`);
	const origin = `http://127.0.0.1:${page.port}`;
	const other = await pageServer(() => '<!doctype html><title>o</title>');
	/* The README's plain page, as written but for wsd's address. */
	const example = await pageServer(() => fs.readFileSync(path.join(
	    __dirname, '..', 'examples', 'page.html'), 'utf8')
	    .split('127.0.0.1:8000').join(`127.0.0.1:${target.port}`));
	const args = ['--no-session-events', '--history', '20',
	    '--allow-origin', origin, '--allow-origin',
	    `http://127.0.0.1:${example.port}`];
	let wsd = await startServer(args);
	const port = target.port = wsd.port;
	const px = await proxy(target);
	target.proxy = px.port;
	const b = await openBrowser(chromium);
	const acked = [];	/* {group, epoch, seq} wsd said 202 to */
	let epochs = {};
	const publish = async (group, n) => {
		for (let i = 0; i < n; i++) {
			const r = await request(port, 'POST',
			    `/api/groups/${group}/events`, { type: 'e', data: i });
			if (r.status === 202)
				acked.push({ group, epoch: epochs[group],
				    seq: JSON.parse(r.body).seq });
		}
	};
	const got = () => b.page.evaluate(() => window.got);
	const has = async (pred) => until(async () => pred(await got()),
	    DEADLINE);
	const lastOf = (g, events) => Math.max(0, ...events.filter(
	    (e) => e.group === g).map((e) => e.seq));
	try {
		await b.page.goto(`${origin}/`);
		check('the page loaded wsd.js from another origin',
		    await b.page.evaluate(() => typeof Wsd === 'function'));
		await b.page.evaluate(pageStart, [`http://127.0.0.1:${px.port}`,
		    GROUPS]);
		check('state open over websocket', await has((g) =>
		    g.states.some((s) => s.state === 'open' &&
		    s.transport === 'websocket')), await got());

		/* Live. */
		const groupsNow = async () => {
			const r = await request(port, 'GET', '/api/groups');
			const e = {};
			for (const x of JSON.parse(r.body).groups) e[x.group] = x.epoch;
			return e;
		};
		check('subscribed to the three groups', await until(async () => {
			epochs = await groupsNow();
			return GROUPS.every((g) => epochs[g]);
		}, DEADLINE));
		for (const g of GROUPS) await publish(g, 5);
		check('live: 5 events of each group', await has((x) =>
		    GROUPS.every((g) => lastOf(g, x.events) === 5)), await got());

		/* Restart: SIGKILL, the same port again. */
		const before = { ...epochs };
		await wsd.kill();
		wsd = await startServer(args, { listen: `127.0.0.1:${port}` });
		check('after a restart: every group reported as reset, old epoch ' +
		    'to new', await has((x) => GROUPS.every((g) => x.resets.some(
		    (r) => r.group === g && r.oldEpoch === before[g] &&
		    r.epoch && r.epoch !== before[g]))), (await got()).resets);
		epochs = await groupsNow();
		for (const g of GROUPS) await publish(g, 3);
		check('then the new streams from seq 1', await has((x) =>
		    GROUPS.every((g) => x.events.some((e) => e.group === g &&
		    e.epoch === epochs[g] && e.seq === 3))), await got());

		/* Outrun alpha's history (20 kept) while the link is frozen. */
		px.freeze();
		await publish('alpha', 30);	/* alpha 4..33; 14..33 kept */
		px.cut();
		check('outrun: the gap reported with its exact range (4-13)',
		    await has((x) => x.gaps.some((gp) => gp.group === 'alpha' &&
		    gp.epoch === epochs.alpha && gp.from === 4 && gp.to === 13)),
		    (await got()).gaps);
		check('then what is kept, to the last (33)', await has((x) =>
		    x.events.some((e) => e.group === 'alpha' &&
		    e.epoch === epochs.alpha && e.seq === 33)));

		/* Upgrades refused: fall back to SSE, and back. */
		px.blockUpgrade = true;
		px.cut();
		check('upgrades refused: state fallback (SSE)', await has((x) =>
		    x.states.some((s) => s.state === 'fallback' ||
		    (s.state === 'open' && s.transport === 'sse'))),
		    (await got()).states.slice(-5));
		for (const g of GROUPS) await publish(g, 4);
		check('over SSE the events of every group arrive', await has((x) =>
		    GROUPS.every((g) => x.events.some((e) => e.group === g &&
		    e.epoch === epochs[g] && e.seq === (g === 'alpha' ? 37 : 7)))),
		    await got());
		const pub = await b.page.evaluate(() => window.wsd.publish('beta',
		    'from_page', { over: 'http' }).then((r) => r,
		    (e) => ({ error: e.code || String(e) })));
		check('a publish from the page during fallback: acknowledged',
		    typeof pub.seq === 'number' && pub.seq === 8, pub);
		if (typeof pub.seq === 'number')
			acked.push({ group: 'beta', epoch: epochs.beta, seq: pub.seq });
		px.blockUpgrade = false;
		const upgradesBefore = px.upgrades;
		check('upgrades pass again: back on a WebSocket', await has((x) =>
		    x.states.length > 0 && px.upgrades > upgradesBefore &&
		    x.states[x.states.length - 1].transport === 'websocket' &&
		    x.states[x.states.length - 1].state === 'open'),
		    (await got()).states.slice(-5));
		for (const g of GROUPS) await publish(g, 2);
		check('and the events go on', await has((x) => GROUPS.every((g) =>
		    x.events.some((e) => e.group === g && e.epoch === epochs[g] &&
		    e.seq === (g === 'alpha' ? 39 : g === 'beta' ? 10 : 9)))),
		    await got());

		/* Exactly once, or inside a reported gap. */
		const x = await got();
		const seen = new Map();
		let dups = 0;
		for (const e of x.events) {
			const k = `${e.group}/${e.epoch}/${e.seq}`;
			if (seen.has(k)) dups++;
			seen.set(k, true);
		}
		const inGap = (a) => x.gaps.some((gp) => gp.group === a.group &&
		    gp.epoch === a.epoch && gp.from <= a.seq && a.seq <= gp.to);
		const lost = acked.filter((a) =>
		    !seen.has(`${a.group}/${a.epoch}/${a.seq}`) && !inGap(a));
		check(`no event delivered twice (${x.events.length} events)`,
		    dups === 0, dups);
		check(`every acknowledged event (${acked.length}) delivered or in ` +
		    'a reported gap', lost.length === 0, lost.slice(0, 5));
		check('in seq order within each group and epoch', GROUPS.every((g) => {
			const s = x.events.filter((e) => e.group === g);
			return s.every((e, i) => i === 0 || e.epoch !== s[i - 1].epoch ||
			    e.seq > s[i - 1].seq);
		}));

		/* Native EventSource across origins, resumed by Last-Event-ID. */
		await b.page.evaluate((url) => {
			window.es = { got: [], ids: [], opens: 0 };
			const es = new EventSource(url);
			es.onopen = () => window.es.opens++;
			es.onmessage = (m) => {
				const d = JSON.parse(m.data);
				if (d.type === 'n')
					window.es.got.push(d.seq), window.es.ids.push(m.lastEventId);
			};
			window.es.source = es;
		}, `http://127.0.0.1:${px.port}/sse?groups=native`);
		const esGot = () => b.page.evaluate(() => ({ got: window.es.got,
		    ids: window.es.ids, opens: window.es.opens }));
		check('EventSource opened', await until(async () =>
		    (await esGot()).opens === 1, DEADLINE));
		for (let i = 0; i < 3; i++)
			await request(port, 'POST', '/api/groups/native/events',
			    { type: 'n', data: i });
		check('EventSource: 3 events, each with an id naming its position',
		    await until(async () => {
			    const s = await esGot();
			    return s.got.length === 3 && /^native=[0-9a-f]{8}:3$/
				.test(s.ids[2]);
		    }, DEADLINE), await esGot());
		px.cut();
		for (let i = 3; i < 6; i++)
			await request(port, 'POST', '/api/groups/native/events',
			    { type: 'n', data: i });
		check('EventSource reconnects by itself with Last-Event-ID: the 3 ' +
		    'missed, none twice', await until(async () => {
			    const s = await esGot();
			    return s.opens >= 2 && s.got.join() === '1,2,3,4,5,6';
		    }, DEADLINE), await esGot());
		await b.page.evaluate(() => window.es.source.close());

		/* fetch across origins: history, and a publish with preflight. */
		const f = await b.page.evaluate(async (base) => {
			const h = await fetch(base + '/api/groups/beta/events?since=0');
			const hist = await h.json();
			const p = await fetch(base + '/api/groups/beta/events', {
				method: 'POST', headers: { 'Content-Type': 'application/json' },
				body: JSON.stringify({ type: 'fetched', data: 1 }) });
			return { hist: hist.events.length, status: p.status,
			    body: await p.json() };
		}, `http://127.0.0.1:${port}`);
		check('fetch across origins: history readable', f.hist > 0, f);
		check('fetch across origins: a JSON POST (preflighted) -> 202',
		    f.status === 202 && typeof f.body.seq === 'number', f);
		await b.page.goto(`http://127.0.0.1:${other.port}/`);
		const denied = await b.page.evaluate(async (base) => {
			const out = {};
			for (const [k, init] of [['get', {}], ['post', { method: 'POST',
			    headers: { 'Content-Type': 'application/json' },
			    body: '{"type":"x"}' }]])
				try {
					await fetch(base + '/api/groups/beta/events', init);
					out[k] = 'read';
				} catch (e) {
					out[k] = 'blocked';
				}
			return out;
		}, `http://127.0.0.1:${port}`);
		check('an origin not listed can neither read nor publish',
		    denied.get === 'blocked' && denied.post === 'blocked', denied);

		/* examples/page.html, the README's plain page. */
		await b.page.goto(`http://127.0.0.1:${example.port}/`);
		const items = () => b.page.$$eval('#events li',
		    (l) => l.map((e) => e.textContent));
		check('example page: connected', await until(async () =>
		    /^open/.test(await b.page.textContent('#state')), DEADLINE),
		    await b.page.textContent('#state'));
		await request(port, 'POST', '/api/groups/agents:a7/events',
		    { type: 'agent_started', data: { n: 1 } });
		check('example page: an event shows', await until(async () =>
		    (await items()).some((t) => / agent_started \{"n":1\}$/
		    .test(t)), DEADLINE), await items());
		await b.page.click('#send');
		check('example page: Publish shows its own event', await until(
		    async () => (await items()).some((t) => / clicked /.test(t)),
		    DEADLINE), await items());
	} finally {
		await b.close();
		px.close();
		page.close();
		other.close();
		example.close();
		await wsd.stop();
	}
}

main().catch((e) => check('test ran to the end', false, e.stack))
    .then(() => done());
