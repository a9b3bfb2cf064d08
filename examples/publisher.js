// examples/publisher.js: publish three events to agents:a7, then exit.
const { Wsd } = require('./wsd.js');	// curl -O http://127.0.0.1:8000/wsd.js
const WebSocket = globalThis.WebSocket || require('ws');	// Node 20: npm install ws

const wsd = new Wsd('http://127.0.0.1:8000', { WebSocket });

async function main() {
	for (let step = 1; step <= 3; step++) {
		const { seq, delivered } = await wsd.publish('agents:a7',
		    'agent_thinking', { step });
		console.log(`published seq ${seq} to ${delivered} subscriber(s)`);
	}
}

main().catch((e) => {
	console.error(`publish failed: ${e.code}: ${e.message}`);
	process.exitCode = 1;
}).finally(() => wsd.close());
