// The live page: agents and events over the /ws/live/ websocket; reconnects with ?since= so
// nothing is missed while the connection was down.
(function () {
  "use strict";
  const root = document.getElementById("live");
  const staleSeconds = parseFloat(root.dataset.staleSeconds);
  // The agents' table and the pending count are on the page only for those who may read them.
  const agentRows = document.querySelector("#agents tbody");
  const pendingCount = document.querySelector("#pending-approvals b");
  const feed = document.getElementById("feed");
  const connection = document.getElementById("connection");
  const agents = new Map();
  const FEED_LIMIT = 200;
  let lastEventId = null;
  let retryDelay = 1000;

  function text(tag, className, value) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    element.textContent = value;
    return element;
  }

  function percent(progress) {
    return progress <= 1 ? progress * 100 : progress;
  }

  function secondsAgo(iso) {
    return (Date.now() - Date.parse(iso)) / 1000;
  }

  function isStale(agent) {
    if (agent.stopped) return false;
    return agent.stale || secondsAgo(agent.last_beat) > (agent.stale_after_seconds || staleSeconds);
  }

  function renderAgents() {
    if (!agentRows) return;
    agentRows.replaceChildren();
    if (agents.size === 0) {
      const row = agentRows.insertRow();
      row.className = "empty";
      const cell = text("td", "", "No agent has beaten yet.");
      cell.colSpan = 5;
      row.append(cell);
      return;
    }
    for (const agent of [...agents.values()].sort((a, b) => a.agent_id.localeCompare(b.agent_id))) {
      const row = agentRows.insertRow();
      row.dataset.agent = agent.agent_id;
      row.classList.toggle("stale", isStale(agent));
      row.classList.toggle("stopped", Boolean(agent.stopped));
      row.append(text("td", "", agent.display_name || agent.agent_id));
      const status = document.createElement("td");
      status.append(text("span", "badge", isStale(agent) ? "stale" : agent.status));
      row.append(status);
      const progressCell = document.createElement("td");
      const bar = document.createElement("progress");
      bar.max = 100;
      bar.value = percent(agent.progress || 0);
      progressCell.append(bar, text("span", "", " " + Math.round(bar.value) + "%"));
      row.append(progressCell);
      row.append(text("td", "task", agent.current_task || ""));
      row.append(text("td", "last-beat", Math.max(0, Math.round(secondsAgo(agent.last_beat))) + " s ago"));
    }
  }

  function updateAgent(event) {
    const data = event.data;
    const known = agents.get(data.agent_id) || {};
    const agent = Object.assign(known, data);
    agent.stopped = event.event_type === "agent.stopped";
    if (event.event_type === "agent.stale") agent.stale = true;
    if (event.event_type === "agent.recovered" || event.event_type === "agent.heartbeat") agent.stale = false;
    agents.set(data.agent_id, agent);
  }

  function showEvent(event) {
    const empty = feed.querySelector(".empty");
    if (empty) empty.remove();
    const item = document.createElement("li");
    item.className = "new";
    item.dataset.type = event.event_type;
    const time = event.timestamp ? new Date(event.timestamp).toLocaleTimeString() : "";
    item.append(text("span", "time", time), text("span", "type", event.event_type));
    item.append(text("span", "data", JSON.stringify(event.data)));
    feed.prepend(item);
    while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
  }

  async function countApprovals() {
    // Asked of the server, not counted from events: events missed while disconnected cannot skew it.
    if (!pendingCount) return;
    const response = await fetch(root.dataset.approvalsUrl, { credentials: "same-origin" });
    if (response.ok) pendingCount.textContent = (await response.json()).length;
  }

  function handle(event) {
    lastEventId = event.event_id;
    if (agentRows && event.event_type.startsWith("agent.")) updateAgent(event);
    if (event.event_type.startsWith("approval.")) countApprovals();
    showEvent(event);
  }

  function setConnection(state, label) {
    connection.className = "connection " + state;
    connection.textContent = label;
  }

  async function loadAgents() {
    if (!agentRows) return;
    for (const url of [root.dataset.activeUrl, root.dataset.staleUrl]) {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) continue;
      for (const agent of await response.json()) agents.set(agent.agent_id, agent);
    }
    renderAgents();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const query = lastEventId ? "?since=" + encodeURIComponent(lastEventId) : "";
    const socket = new WebSocket(scheme + location.host + root.dataset.feedUrl + query);
    socket.onmessage = (message) => {
      const body = JSON.parse(message.data);
      if (body.type === "ready") {
        setConnection("connected", "live");
        retryDelay = 1000;
        countApprovals();
      } else if (body.type === "events") {
        body.events.forEach(handle);
        renderAgents();
      } else if (body.type === "error") {
        setConnection("disconnected", body.error.message);
      }
    };
    socket.onclose = () => {
      setConnection("disconnected", "disconnected, reconnecting in " + retryDelay / 1000 + " s");
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    };
  }

  loadAgents().finally(connect);
  setInterval(renderAgents, 1000); // ages and stale marks move on without events
})();
