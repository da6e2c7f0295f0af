// Chat over herald.v1 with the browser client served at /herald.js (SPEC §8).
//
// Channels of a room R:
//   chat:R        messages ({ name, text, sid }, event "message"), with presence
//   chat:R:names  who is who: presence only knows connection ids, so each page
//                 says { name, client } there after every (re)connect, asking the
//                 others to answer with theirs.
import { HeraldClient } from '/herald.js';
import { avatar, formatTime, parsePosition } from './format.js';

const NAME_KEY = 'herald-demo:name';
const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,40}$/;
const MAX_NAME_LENGTH = 32;
/** Earlier messages shown on joining (the server keeps --history-size of them). */
const EARLIER_SHOWN = 50;
/** Messages kept on the page; older ones are removed from the list. */
const MAX_SHOWN = 300;
const FIRST_NAMES = ['Ada', 'Grace', 'Alan', 'Radia', 'Linus', 'Barbara', 'Ken', 'Hedy', 'Margaret', 'Edsger'];

export function mountChat(root) {
  const $ = (id) => root.querySelector(`#${id}`);
  const els = {
    status: $('chat-status'),
    joinForm: $('chat-join'),
    joinError: $('chat-join-error'),
    name: $('chat-name'),
    room: $('chat-room'),
    session: $('chat-session'),
    intro: $('chat-intro'),
    me: $('chat-me'),
    roomName: $('chat-room-name'),
    leave: $('chat-leave'),
    online: $('chat-online'),
    onlineCount: $('chat-online-count'),
    messages: $('chat-messages'),
    compose: $('chat-compose'),
    text: $('chat-text'),
    sendError: $('chat-send-error'),
  };

  /** What the page shows, for the console and the end-to-end tests. */
  const state = { connection: 'idle', name: undefined, room: undefined, online: [], received: [], resets: 0 };
  let session;

  // Only when empty: someone (or autofill) may have typed a name before this module ran.
  if (!els.name.value) els.name.value = readStoredName() ?? `${FIRST_NAMES[Math.floor(Math.random() * FIRST_NAMES.length)]} ${Math.floor(10 + Math.random() * 90)}`;

  els.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const name = els.name.value.trim().slice(0, MAX_NAME_LENGTH);
    const room = els.room.value.trim();
    if (!name) return showJoinError('Pick a name first.', els.name);
    if (!ROOM_PATTERN.test(room)) return showJoinError('A room name is 1–40 letters, digits, “-” or “_”.', els.room);
    els.joinError.hidden = true;
    storeName(name);
    session = startSession(name, room);
  });

  els.leave.addEventListener('click', () => {
    session?.close();
    session = undefined;
    Object.assign(state, { name: undefined, room: undefined, online: [], received: [] });
    setStatus('idle');
    els.session.hidden = true;
    els.joinForm.hidden = false;
    els.intro.hidden = false;
    els.name.focus();
  });

  els.compose.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = els.text.value.trim();
    if (!text || !session) return;
    els.text.value = '';
    els.sendError.hidden = true;
    session.send(text).catch(() => {
      if (!els.text.value) els.text.value = text;
      els.sendError.textContent = 'Not sent: the connection is down. It will come back by itself — try again in a moment.';
      els.sendError.hidden = false;
    });
  });

  function showJoinError(text, field) {
    els.joinError.textContent = text;
    els.joinError.hidden = false;
    field.focus();
  }

  function setStatus(connection) {
    state.connection = connection;
    els.status.dataset.state = connection;
    els.status.textContent = {
      idle: 'not joined',
      connecting: 'connecting…',
      connected: 'connected',
      reconnecting: 'reconnecting…',
      closed: 'offline',
    }[connection];
  }

  function startSession(name, room) {
    const sid = randomId();
    const client = new HeraldClient(`${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`);
    const namesByClient = new Map();
    let onlineClients = new Set();
    let myId;
    let everConnected = false;
    let closed = false;
    let replyTimer;
    let refreshTimer;
    const rendered = new Set();
    let firstLiveOffset;

    Object.assign(state, { name, room, online: [], received: [], resets: 0 });
    els.me.textContent = name;
    els.roomName.textContent = `#${room}`;
    els.messages.replaceChildren();
    els.joinForm.hidden = true;
    els.intro.hidden = true;
    els.session.hidden = false;
    els.text.focus();
    addSystemLine(`You joined #${room} as ${name}.`);
    document.dispatchEvent(new CustomEvent('herald-demo:room', { detail: { room } }));
    renderRoster();

    client.on('state', (clientState) => {
      if (closed) return;
      if (clientState === 'connected') {
        if (everConnected) addSystemLine('Reconnected — picking up after the last message seen.');
        everConnected = true;
        setStatus('connected');
        // After the client has re-sent its subscribes (same tick), not before them.
        setTimeout(() => void announce(), 0);
      } else if (clientState === 'closed') {
        setStatus('closed');
      } else {
        if (state.connection === 'connected') addSystemLine('Connection lost — reconnecting…');
        setStatus(everConnected ? 'reconnecting' : 'connecting');
      }
    });
    setStatus('connecting');

    const messages = client.subscribe(`chat:${room}`, {
      presence: true,
      onMessage: (message) => {
        const position = parsePosition(message.position);
        if (firstLiveOffset === undefined && position) firstLiveOffset = position.offset;
        showMessage(message, false);
      },
      onJoin: (member) => {
        onlineClients.add(member.client);
        renderRoster();
      },
      onLeave: (member) => {
        onlineClients.delete(member.client);
        renderRoster();
      },
      onReset: (info) => {
        state.resets++;
        addSystemLine(`Some messages could not be recovered (${info.reason}). Showing new messages from here.`, 'warn');
      },
    });
    const names = client.subscribe(`chat:${room}:names`, { onMessage: (message) => onNameMessage(message.data) });

    messages.ready.then(showEarlierMessages, (err) => addSystemLine(`Could not join: ${err.message}`, 'warn'));

    /** Who is here (presence), then who is who (names). Runs after every (re)connect. */
    async function announce() {
      try {
        await Promise.all([messages.ready, names.ready]);
        const members = await messages.presence();
        if (closed) return;
        myId = client.clientId;
        onlineClients = new Set(members.map((member) => member.client));
        if (myId) {
          onlineClients.add(myId);
          namesByClient.set(myId, name);
        }
        renderRoster();
        await names.publish({ name, client: myId, ask: true }, { event: 'hello' });
      } catch {
        // Lost the connection meanwhile: the next 'connected' runs this again.
      }
    }

    function onNameMessage(data) {
      if (!data || typeof data.name !== 'string' || typeof data.client !== 'string' || data.client === myId) return;
      namesByClient.set(data.client, data.name.slice(0, MAX_NAME_LENGTH));
      // A name from a connection not in our list: presence (not this message) decides who is online.
      if (!onlineClients.has(data.client)) scheduleRosterRefresh();
      renderRoster();
      if (data.ask) scheduleReply();
    }

    /** Answer a newcomer with our name, a little spread out so a busy room does not answer at once. */
    function scheduleReply() {
      if (replyTimer || !myId) return;
      replyTimer = setTimeout(() => {
        replyTimer = undefined;
        names.publish({ name, client: myId, ask: false }, { event: 'hello' }).catch(() => {});
      }, Math.random() * 150);
    }

    function scheduleRosterRefresh() {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(async () => {
        try {
          const members = await messages.presence();
          onlineClients = new Set(members.map((member) => member.client));
          if (myId) onlineClients.add(myId);
          renderRoster();
        } catch {}
      }, 100);
    }

    function renderRoster() {
      const people = [...onlineClients].map((client) => ({
        client,
        name: namesByClient.get(client) ?? `guest-${client.slice(-4)}`,
        you: client === myId,
      }));
      people.sort((a, b) => Number(b.you) - Number(a.you) || a.name.localeCompare(b.name));
      state.online = people.map((person) => person.name);
      els.onlineCount.textContent = String(people.length);
      els.online.replaceChildren(
        ...people.map((person) => {
          const li = document.createElement('li');
          const label = document.createElement('span');
          label.className = 'name';
          label.textContent = person.name;
          li.append(avatar(person.name), label);
          if (person.you) {
            const you = document.createElement('span');
            you.className = 'you';
            you.textContent = '(you)';
            li.append(you);
          }
          return li;
        }),
      );
    }

    /** History from before we joined, above the "You joined" line; live copies of the same positions are skipped. */
    async function showEarlierMessages() {
      let publications;
      try {
        publications = await messages.history();
      } catch {
        return;
      }
      if (closed) return;
      const earlier = publications
        .filter((pub) => !rendered.has(pub.position) && (firstLiveOffset === undefined || (parsePosition(pub.position)?.offset ?? Infinity) < firstLiveOffset))
        .slice(-EARLIER_SHOWN);
      if (earlier.length === 0) return;
      const anchor = els.messages.firstElementChild;
      const divider = document.createElement('li');
      divider.className = 'divider';
      divider.textContent = 'Earlier messages';
      els.messages.insertBefore(divider, anchor);
      for (const pub of earlier) els.messages.insertBefore(messageItem(pub, true), anchor);
      scrollToEnd(true);
    }

    function showMessage(message, earlier) {
      if (rendered.has(message.position)) return;
      const nearEnd = els.messages.scrollHeight - els.messages.scrollTop - els.messages.clientHeight < 60;
      els.messages.append(messageItem(message, earlier));
      while (els.messages.children.length > MAX_SHOWN) els.messages.firstElementChild.remove();
      scrollToEnd(nearEnd);
    }

    function messageItem(message, earlier) {
      rendered.add(message.position);
      state.received.push(message.position);
      const data = message.data;
      const author = typeof data?.name === 'string' ? data.name.slice(0, MAX_NAME_LENGTH) : 'api';
      const text = typeof data?.text === 'string' ? data.text : JSON.stringify(data);
      const li = document.createElement('li');
      li.className = `message${data?.sid === sid ? ' mine' : ''}${earlier ? ' history' : ''}`;
      li.dataset.position = message.position;
      const meta = document.createElement('div');
      meta.className = 'meta';
      const who = document.createElement('span');
      who.className = 'author';
      who.textContent = author;
      const time = document.createElement('time');
      const at = typeof data?.at === 'number' ? new Date(data.at) : new Date();
      time.dateTime = at.toISOString();
      time.textContent = formatTime(at);
      meta.append(who, time);
      const body = document.createElement('p');
      body.className = 'text';
      body.textContent = text;
      li.append(avatar(author), meta, body);
      return li;
    }

    function addSystemLine(text, kind = '') {
      const li = document.createElement('li');
      li.className = `system ${kind}`.trim();
      li.textContent = text;
      els.messages.append(li);
      scrollToEnd(true);
    }

    function scrollToEnd(really) {
      if (really) els.messages.scrollTop = els.messages.scrollHeight;
    }

    return {
      send: (text) => messages.publish({ name, text, sid, at: Date.now() }, { event: 'message' }),
      close() {
        closed = true;
        clearTimeout(replyTimer);
        clearTimeout(refreshTimer);
        client.close();
      },
    };
  }

  return state;
}

function randomId() {
  return crypto.getRandomValues(new Uint32Array(2)).reduce((text, n) => text + n.toString(36), '');
}

function readStoredName() {
  try {
    return localStorage.getItem(NAME_KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

function storeName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // Storage may be off (private mode); the name is only a convenience.
  }
}
