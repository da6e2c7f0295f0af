// The HTTP publish API (SPEC §2), shown as the curl command a backend would run and sent with fetch.

const PRESETS = {
  chat: () => ({
    channel: `chat:${document.getElementById('chat-room')?.value || 'lobby'}`,
    event: 'message',
    data: { name: 'backend', text: 'Hello from POST /api/publish!' },
  }),
  order: () => ({
    channel: 'orders',
    event: 'order-update',
    data: {
      id: `ORD-${Math.floor(90000 + Math.random() * 9999)}`,
      customer: 'API Example',
      city: 'Anywhere',
      items: 1,
      amount: 42.5,
      currency: 'EUR',
      status: 'placed',
      updatedAt: new Date().toISOString(),
    },
  }),
};

export function mountPublishBox(root) {
  const $ = (id) => root.querySelector(`#${id}`);
  const form = $('publish-form');
  const channel = $('publish-channel');
  const event = $('publish-event');
  const data = $('publish-data');
  const dataError = $('publish-data-error');
  const result = $('publish-result');
  const command = $('curl-command');
  const copy = $('curl-copy');

  function fill(preset) {
    const values = PRESETS[preset]();
    channel.value = values.channel;
    event.value = values.event;
    data.value = JSON.stringify(values.data, null, 2);
    update();
  }

  /** The request body, or undefined (with the reason shown) when the data is not JSON. */
  function body() {
    let parsed;
    try {
      parsed = JSON.parse(data.value);
    } catch (err) {
      data.setAttribute('aria-invalid', 'true');
      dataError.textContent = `Not valid JSON: ${err.message}`;
      dataError.hidden = false;
      return undefined;
    }
    data.removeAttribute('aria-invalid');
    dataError.hidden = true;
    const request = { channel: channel.value.trim() };
    if (event.value.trim()) request.event = event.value.trim();
    request.data = parsed;
    return request;
  }

  function update() {
    const request = body();
    const json = request ? JSON.stringify(request, null, 2) : '…';
    command.textContent = [
      `curl -X POST ${location.origin}/api/publish \\`,
      `  -H 'Content-Type: application/json' \\`,
      `  -d ${shellQuote(json).replace(/\n/g, '\n  ')}`,
    ].join('\n');
  }

  form.addEventListener('input', update);
  // Joining a chat room points a chat example at that room, so "Send" lands where you are.
  document.addEventListener('herald-demo:room', ({ detail }) => {
    if (!channel.value.startsWith('chat:')) return;
    channel.value = `chat:${detail.room}`;
    update();
  });
  root.querySelectorAll('[data-preset]').forEach((button) => button.addEventListener('click', () => fill(button.dataset.preset)));

  form.addEventListener('submit', async (submit) => {
    submit.preventDefault();
    const request = body();
    if (!request) return data.focus();
    if (!request.channel) {
      channel.setAttribute('aria-invalid', 'true');
      return channel.focus();
    }
    channel.removeAttribute('aria-invalid');
    showResult('', 'Publishing…');
    try {
      const response = await fetch('/api/publish', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(request),
      });
      const answer = await response.json().catch(() => ({}));
      if (response.ok) showResult('ok', `Published to ${answer.channel} at position ${answer.position}.`);
      else showResult('error', `${response.status}: ${answer.error?.message ?? response.statusText}`);
    } catch (err) {
      showResult('error', `Could not reach the server (${err.message}).`);
    }
  });

  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(command.textContent);
      copy.textContent = 'Copied';
    } catch {
      // Clipboard access needs a secure context: select the text for a manual copy instead.
      getSelection().selectAllChildren(command);
      copy.textContent = 'Selected';
    }
    setTimeout(() => (copy.textContent = 'Copy'), 1500);
  });

  function showResult(kind, text) {
    result.dataset.kind = kind;
    result.textContent = text;
  }

  fill('chat');
}

/** POSIX single quotes: safe for any JSON, including quotes inside it. */
function shellQuote(text) {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}
