'use strict';
/*
 * node-ws - the bench contract on Node's "ws" package, written the way
 * its documentation suggests: /echo echoes, /sub joins the one group, a
 * message on /pub is sent to every /sub.
 *
 * A subscriber with more than OUT_MAX bytes buffered is dropped, as wsd
 * drops slow consumers, so that a flood cannot take the machine's memory.
 *
 *   node node-ws.js --listen 127.0.0.1:PORT
 */

const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, '..',
    'node_modules', 'ws'));

const OUT_MAX = 4 * 1024 * 1024;

function main() {
	const i = process.argv.indexOf('--listen');
	const m = i > 0 && /^(127\.[0-9.]+):([0-9]+)$/.exec(
	    process.argv[i + 1] || '');
	if (!m) {
		console.error('usage: node node-ws.js --listen 127.0.0.1:PORT');
		process.exit(2);
	}
	const subs = new Set();
	const wss = new WebSocketServer({
		host: m[1],
		port: Number(m[2]),
		backlog: 4096,
		perMessageDeflate: false,
		clientTracking: false,
		maxPayload: 1 << 20,
	});

	wss.on('connection', (ws, req) => {
		ws.on('error', () => {});
		switch (req.url) {
		case '/echo':
			ws.on('message', (data, binary) => ws.send(data,
			    { binary }));
			break;
		case '/sub':
			subs.add(ws);
			ws.on('close', () => subs.delete(ws));
			break;
		case '/pub':
			ws.on('message', (data, binary) => {
				for (const s of subs) {
					if (s.bufferedAmount > OUT_MAX) {
						subs.delete(s);
						s.terminate();
						continue;
					}
					s.send(data, { binary });
				}
			});
			break;
		default:
			ws.close(1008);
		}
	});
	wss.on('listening', () => {
		console.error(`listening addr=${m[1]}:${wss.address().port}`);
	});
	wss.on('error', (err) => {
		console.error(`node-ws: ${err.message}`);
		process.exit(1);
	});
	for (const sig of ['SIGINT', 'SIGTERM'])
		process.on(sig, () => process.exit(0));
}

main();
