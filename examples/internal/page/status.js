// watch shows the state of the EventSource es in the element el: a badge
// that says "connecting", "live", or "reconnecting" with the number of
// attempts; the browser reconnects by itself, onerror only reports it.
function watch(es, el) {
  let attempts = 0;
  const show = (state, text) => { el.dataset.state = state; el.textContent = text; };
  show('connecting', 'connecting…');
  es.addEventListener('open', () => { attempts = 0; show('live', 'live'); });
  es.addEventListener('error', () => {
    if (es.readyState === EventSource.CLOSED) { show('closed', 'disconnected'); return; }
    attempts++;
    show('reconnecting', attempts > 1 ? `reconnecting… (attempt ${attempts})` : 'reconnecting…');
  });
}
