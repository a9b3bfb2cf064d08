'use strict';
/*
 * node-ws - the bench contract on Node's "ws" package, written the way
 * its documentation suggests: /echo echoes, /sub joins the one group, a
 * message on /pub is sent to every /sub.
 *
 * A subscriber with more than OUT_MAX bytes buffered is dropped, as wsd
 * drops slow consumers, so that a flood cannot take the machine's memory.
 *
 * With --tls-cert and --tls-key the server is an https.Server (wss://)
 * that ws upgrades on, as ws' documentation shows for TLS.
 *
 *   node node-ws.js --listen 127.0.0.1:PORT [--tls-cert F --tls-key F]
 */

const fs = require('fs');
const https = require('https');
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, '..',
    'node_modules', 'ws'));

const OUT_MAX = 4 * 1024 * 1024;

function arg(name) {
	const i = process.argv.indexOf(name);
	return i > 0 ? process.argv[i + 1] : undefined;
}

function main() {
	const m = /^(127\.[0-9.]+):([0-9]+)$/.exec(arg('--listen') || '');
	if (!m) {
		console.error('usage: node node-ws.js --listen 127.0.0.1:PORT ' +
		    '[--tls-cert F --tls-key F]');
		process.exit(2);
	}
	const subs = new Set();
	const opts = {
		perMessageDeflate: false,
		clientTracking: false,
		maxPayload: 1 << 20,
	};
	let server = null;
	if (arg('--tls-cert')) {
		server = https.createServer({
			cert: fs.readFileSync(arg('--tls-cert')),
			key: fs.readFileSync(arg('--tls-key')),
		});
		opts.server = server;
	} else {
		opts.host = m[1];
		opts.port = Number(m[2]);
		opts.backlog = 4096;
	}
	const wss = new WebSocketServer(opts);

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
	if (server)
		server.listen(Number(m[2]), m[1], 4096, () => console.error(
		    `listening addr=${m[1]}:${server.address().port}`));
	else
		wss.on('listening', () => console.error(
		    `listening addr=${m[1]}:${wss.address().port}`));
	wss.on('error', (err) => {
		console.error(`node-ws: ${err.message}`);
		process.exit(1);
	});
	for (const sig of ['SIGINT', 'SIGTERM'])
		process.on(sig, () => process.exit(0));
}

main();
