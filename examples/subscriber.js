// examples/subscriber.js: print agents:a7's events until Ctrl-C; the next
// run goes on from the last one printed (kept in subscriber.pos).
const fs = require('fs');
const { Wsd } = require('./wsd.js');	// curl -O http://127.0.0.1:8000/wsd.js
const WebSocket = globalThis.WebSocket || require('ws');	// Node 20: npm install ws

const saved = fs.existsSync('subscriber.pos') ?
    fs.readFileSync('subscriber.pos', 'utf8') : undefined;
const wsd = new Wsd('http://127.0.0.1:8000', { WebSocket });
wsd.on('state', (s) => console.error(`[${s.state}${s.reason ?
    ': ' + s.reason : ''} over ${s.transport}]`));
const sub = wsd.subscribe('agents:a7', (event) => {
	console.log(event.seq, event.type, JSON.stringify(event.data));
	fs.writeFileSync('subscriber.pos', `${sub.position.epoch}:${event.seq}`);
}, {
	since: saved,
	onGap: (g) => console.error(`[missed ${g.from}..${g.to}${g.filled ?
	    ', filled from history' : ''}]`),
	onReset: (r) => console.error(`[new stream: ${r.oldEpoch} -> ${r.epoch}]`),
});
process.on('SIGINT', () => wsd.close());
