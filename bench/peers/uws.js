'use strict';
/*
 * uws - the bench contract on uWebSockets (uWebSockets.js), as its
 * examples write it: /echo echoes, /sub subscribes to the topic "bench",
 * a message on /pub goes to every /sub through the app's own publish()
 * (uWebSockets' native fan-out: it frames once and corks each socket).
 *
 * uWebSockets cannot be built from source on the bench machine (no
 * network), so this loads the prebuilt uWebSockets.js binary that the
 * npm package uws-pack ships (dist/bin/uws_linux_x64_ABI.node): a
 * third-party repackaging of uWebSockets.js' releases, not built here.
 * Its ESM entry point wants Node >= 22, so the binary for this Node's
 * ABI is loaded directly.
 *
 * A subscriber with more than OUT_MAX bytes buffered is dropped, as wsd
 * drops slow consumers (maxBackpressure, closeOnBackpressureLimit).
 *
 *   node uws.js --listen 127.0.0.1:PORT [--tls-cert F --tls-key F]
 */

const path = require('path');

const OUT_MAX = 4 * 1024 * 1024;

function load() {
	const bin = path.join(__dirname, '..', 'node_modules', 'uws-pack',
	    'dist', 'bin', `uws_${process.platform}_${process.arch}_` +
	    `${process.versions.modules}.node`);
	const m = { exports: {} };
	process.dlopen(m, bin);
	return m.exports;
}

function arg(name) {
	const i = process.argv.indexOf(name);
	return i > 0 ? process.argv[i + 1] : undefined;
}

function main() {
	const m = /^(127\.[0-9.]+):([0-9]+)$/.exec(arg('--listen') || '');
	if (!m) {
		console.error('usage: node uws.js --listen 127.0.0.1:PORT ' +
		    '[--tls-cert F --tls-key F]');
		process.exit(2);
	}
	const uws = load();
	const cert = arg('--tls-cert'), key = arg('--tls-key');
	const app = cert ? uws.SSLApp({ cert_file_name: cert,
	    key_file_name: key }) : uws.App();
	const opts = {
		compression: uws.DISABLED,
		maxPayloadLength: 1 << 20,
		maxBackpressure: OUT_MAX,
		closeOnBackpressureLimit: true,
		idleTimeout: 0,
	};
	app.ws('/echo', { ...opts,
	    message: (ws, msg, binary) => { ws.send(msg, binary); } });
	app.ws('/sub', { ...opts,
	    open: (ws) => { ws.subscribe('bench'); } });
	app.ws('/pub', { ...opts,
	    message: (ws, msg, binary) => { app.publish('bench', msg,
		binary); } });
	app.any('/*', (res) => { res.writeStatus('404 Not Found').end(); });
	app.listen(m[1], Number(m[2]), (token) => {
		if (!token) {
			console.error(`uws: cannot listen on ${m[1]}:${m[2]}`);
			process.exit(1);
		}
		console.error(`listening addr=${m[1]}:` +
		    `${uws.us_socket_local_port(token)}`);
	});
	for (const sig of ['SIGINT', 'SIGTERM'])
		process.on(sig, () => process.exit(0));
}

main();
