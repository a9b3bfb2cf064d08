/*
 * test_readme.js - the README's JavaScript example, run as written.
 *
 * The ```js block of README.md's Quick start is taken out of the file and
 * run in Node with the `ws` package as its WebSocket, against a real wsd
 * on a free port (the block's 127.0.0.1:8000 is replaced).  It must print
 * its own publish, an event published over HTTP, and, after wsd restarts
 * on the same port, go on with the new stream from its start.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const { check, done, need, request, startServer, until } =
    require('./wsdtest');

async function main() {
	const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'),
	    'utf8');
	const m = /```js\n([\s\S]*?)```/.exec(readme);
	check('README has a js block', !!m);
	if (!m)
		return;
	let wsd = await startServer();
	const port = wsd.port;
	const code = m[1].split('127.0.0.1:8000').join('127.0.0.1:' + port);
	const lines = [];
	const sandbox = { WebSocket: need('ws'), JSON, setTimeout,
	    console: { log: (...a) => lines.push(a.join(' ')) } };
	const run = new Function(...Object.keys(sandbox), code);
	run(...Object.values(sandbox));
	check('its own publish comes back (seq 1)', await until(() =>
	    lines.includes('agent_thinking 1 {}'), 10000), lines);
	await request(port, 'POST', '/api/groups/session:s1/events',
	    { type: 'tool_executing', data: { tool: 'grep' } });
	check('an HTTP publish is printed (seq 2)', await until(() =>
	    lines.includes('tool_executing 2 {"tool":"grep"}'), 10000), lines);
	await wsd.kill();
	wsd = await startServer([], { listen: '127.0.0.1:' + port });
	check('after a restart it reconnects and publishes again: the new ' +
	    'stream from its start (seq 1)', await until(() =>
	    lines.filter((l) => l === 'agent_thinking 1 {}').length === 2,
	    15000), lines);
	await request(port, 'POST', '/api/groups/session:s1/events',
	    { type: 'agent_completed', data: {} });
	check('then live events of the new stream', await until(() =>
	    lines.includes('agent_completed 2 {}'), 10000), lines);
	await wsd.kill();
}

main().catch((e) => check('test ran to the end', false, e.stack))
    .then(() => done());
