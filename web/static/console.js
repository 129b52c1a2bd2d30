// The console's only script (no library, nothing fetched from elsewhere): the Mini App sign-in, and a
// transcript line that plays the recording from where it starts.
"use strict";

function initDataFromTelegram() {
  // Telegram opens a Mini App with its signed initData in the URL fragment (tgWebAppData); its own SDK,
  // when a page loads it, exposes the same string as Telegram.WebApp.initData.
  const sdk = window.Telegram && window.Telegram.WebApp && window.Telegram.WebApp.initData;
  if (sdk) return sdk;
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  return fragment.get("tgWebAppData") || "";
}

async function signIn(section) {
  const status = document.getElementById("signin-status");
  const initData = initDataFromTelegram();
  if (!initData) {
    status.hidden = true;
    document.getElementById("signin-hint").hidden = false;
    return;
  }
  const body = new URLSearchParams({ init_data: initData });
  const answer = await fetch(section.dataset.endpoint, { method: "POST", body, credentials: "same-origin" });
  const result = await answer.json().catch(() => ({ ok: false }));
  if (answer.ok && result.ok) {
    history.replaceState(null, "", window.location.pathname); // the initData leaves the address bar
    window.location.assign(result.next);
    return;
  }
  status.hidden = true;
  const error = document.getElementById("signin-error");
  error.dataset.reason = result.reason || "";
  error.hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  const section = document.getElementById("signin");
  if (section) signIn(section);
  const player = document.getElementById("player");
  for (const button of document.querySelectorAll("#transcript .seek")) {
    button.addEventListener("click", () => {
      if (!player) return;
      player.currentTime = parseFloat(button.parentElement.dataset.start || "0");
      player.play();
    });
  }
});
