/*
 * test_examples.js - examples/ as the README shows them, run as written.
 *
 * The README's "Client: wsd.js" section must show each file of examples/
 * whole, in a fenced block.  The Node examples then run as a user would
 * run them: in an empty directory, next to the wsd.js that wsd serves at
 * /wsd.js (which must be this checkout's wsd.js), with `ws` from
 * test/node_modules and the URL's 127.0.0.1:8000 pointed at a wsd on a
 * free port.  subscriber.js must print what publisher.js published, keep
 * its position in subscriber.pos across runs (the second run prints only
 * what it missed), and report a restart of wsd as a new stream.  They
 * run twice: with `ws` (Node 20), and with Node's own WebSocket (Node 22;
 * --experimental-websocket on Node 20).  page.html is for a browser;
 * here its script is only checked to parse.
 */
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { DEADLINE, check, done, request, startServer, until } =
    require('./wsdtest');

const ROOT = path.join(__dirname, '..');
const EXAMPLES = path.join(ROOT, 'examples');

/* The fenced blocks of the README's client section. */
function readmeBlocks() {
	const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
	const m = /^## Client: wsd\.js\n([\s\S]*?)^## /m.exec(readme);
	if (!check('README has a "Client: wsd.js" section', !!m))
		return [];
	return [...m[1].matchAll(/^```[a-z]*\n([\s\S]*?)^```$/gm)].map((b) => b[1]);
}

/* node FLAGS FILE in dir; { proc, out(), err(), exited } */
function run(dir, flags, file) {
	const proc = spawn(process.execPath, [...flags, file], { cwd: dir,
	    env: { ...process.env, NODE_PATH: path.join(__dirname, 'node_modules') },
	    stdio: ['ignore', 'pipe', 'pipe'] });
	let out = '', err = '';
	proc.stdout.on('data', (d) => { out += d; });
	proc.stderr.on('data', (d) => { err += d; });
	const exited = new Promise((r) => proc.on('exit', (code) => r(code)));
	return { proc, out: () => out, err: () => err, exited };
}

const lines = (text) => text.split('\n').filter((l) => l !== '');

async function main() {
	const blocks = readmeBlocks();
	for (const f of fs.readdirSync(EXAMPLES).sort())
		check(`README shows examples/${f} as it is`, blocks.includes(
		    fs.readFileSync(path.join(EXAMPLES, f), 'utf8')));

	const page = fs.readFileSync(path.join(EXAMPLES, 'page.html'), 'utf8');
	const scripts = [...page.matchAll(/<script( src="[^"]*")?>([\s\S]*?)<\/script>/g)];
	check('page.html loads /wsd.js from wsd', scripts.length === 2 &&
	    scripts[0][1] === ' src="http://127.0.0.1:8000/wsd.js"');
	let parses = true;
	try {
		new Function(scripts[1][2]);	/* eslint-disable-line no-new-func */
	} catch (e) {
		parses = false;
	}
	check('page.html\'s script parses', parses);
	await nodeExamples('with ws', []);
	await nodeExamples('with Node\'s own WebSocket', typeof globalThis.WebSocket ===
	    'function' ? [] : ['--experimental-websocket']);
}

/* subscriber.js and publisher.js, run as the README says. */
async function nodeExamples(how, flags) {
	console.log(`# the Node examples ${how}`);
	let wsd = await startServer();
	const port = wsd.port;
	const served = await request(port, 'GET', '/wsd.js');
	check('GET /wsd.js serves this checkout\'s wsd.js', served.status === 200 &&
	    served.body === fs.readFileSync(path.join(ROOT, 'wsd.js'), 'utf8'),
	    served.status);
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsd-examples-'));
	fs.writeFileSync(path.join(dir, 'wsd.js'), served.body);
	for (const f of ['publisher.js', 'subscriber.js'])
		fs.writeFileSync(path.join(dir, f), fs.readFileSync(path.join(EXAMPLES,
		    f), 'utf8').split('127.0.0.1:8000').join('127.0.0.1:' + port));
	const subs = [];
	try {
		let sub = run(dir, flags, 'subscriber.js');
		subs.push(sub);
		check('subscriber.js connects', await until(() =>
		    sub.err().includes('[open over websocket]'), DEADLINE), sub.err());
		const pub = run(dir, flags, 'publisher.js');
		check('publisher.js exits 0', await pub.exited === 0, pub.err());
		check('publisher.js prints each seq and its one subscriber',
		    lines(pub.out()).join('|') === [1, 2, 3].map((n) =>
		    `published seq ${n} to 1 subscriber(s)`).join('|'), pub.out());
		const want = [1, 2, 3].map((n) => `${n} agent_thinking {"step":${n}}`);
		check('subscriber.js prints the three events', await until(() =>
		    lines(sub.out()).join('|') === want.join('|'), DEADLINE), sub.out());
		sub.proc.kill('SIGINT');
		check('subscriber.js exits 0 on SIGINT', await sub.exited === 0,
		    sub.err());
		const epoch = JSON.parse((await request(port, 'GET',
		    '/api/groups/agents:a7/events?limit=0')).body).epoch;
		check('subscriber.pos holds EPOCH:3', fs.readFileSync(path.join(dir,
		    'subscriber.pos'), 'utf8') === `${epoch}:3`);

		for (const n of [4, 5])
			await request(port, 'POST', '/api/groups/agents:a7/events',
			    { type: 'agent_thinking', data: { step: n } });
		sub = run(dir, flags, 'subscriber.js');
		subs.push(sub);
		check('run again, it prints only what it missed (4, 5)', await until(() =>
		    lines(sub.out()).length >= 2, DEADLINE) && lines(sub.out()).join('|') ===
		    '4 agent_thinking {"step":4}|5 agent_thinking {"step":5}', sub.out());
		await wsd.kill();
		wsd = await startServer([], { listen: '127.0.0.1:' + port });
		check('a restart of wsd is reported as a new stream', await until(() =>
		    /\[new stream: [0-9a-f]{8} -> [0-9a-f]{8}\]/.test(sub.err()),
		    DEADLINE), sub.err());
		await request(port, 'POST', '/api/groups/agents:a7/events',
		    { type: 'agent_done', data: {} });
		check('and goes on with it', await until(() =>
		    sub.out().includes('1 agent_done {}'), DEADLINE), sub.out());
		sub.proc.kill('SIGINT');
		check('exits 0 on SIGINT', await sub.exited === 0, sub.err());
	} finally {
		for (const s of subs)
			if (s.proc.exitCode === null)
				s.proc.kill('SIGKILL');
		fs.rmSync(dir, { recursive: true, force: true });
		await wsd.stop();
	}
}

main().catch((e) => check('test ran to the end', false, e.stack))
    .then(() => done());
