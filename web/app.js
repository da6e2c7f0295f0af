// Herald demo page: three independent parts, so one failing never takes the others down.
import { mountDashboard } from './dashboard.js';
import { mountPublishBox } from './publish.js';

/** Live state for the curious (and for the end-to-end tests): `heraldDemo` in the console. */
const demo = {};
Object.defineProperty(window, 'heraldDemo', { value: demo });

demo.orders = mountDashboard(document.getElementById('orders'));
mountPublishBox(document.getElementById('publish'));

// The chat needs the client bundle; load it on its own so a missing /herald.js
// leaves the dashboard and the publish box working.
import('./chat.js').then(
  ({ mountChat }) => {
    demo.chat = mountChat(document.getElementById('chat'));
  },
  () => {
    const status = document.getElementById('chat-status');
    status.textContent = 'client unavailable';
    status.dataset.state = 'closed';
    const error = document.getElementById('chat-join-error');
    error.textContent = 'The client library /herald.js could not be loaded (run `npm run build`).';
    error.hidden = false;
  },
);
