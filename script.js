// A1111-compatible page globals for UI extensions: gradioApp(), the on* callback registries,
// opts (from the hidden #settings_json), current-tab helpers. Loaded before javascript/*.js.

function gradioApp() {
    const apps = document.getElementsByTagName("gradio-app");
    const root = apps.length === 0 ? document : apps[0];
    if (root !== document && !root.getElementById) {
        root.getElementById = (id) => document.getElementById(id);
    }
    return root.shadowRoot ? root.shadowRoot : root;
}

const uiUpdateCallbacks = [];
const uiAfterUpdateCallbacks = [];
const uiLoadedCallbacks = [];
const uiTabChangeCallbacks = [];
const optionsChangedCallbacks = [];
const optionsAvailableCallbacks = [];
let uiAfterUpdateTimeout = null;
let uiCurrentTab = null;

/* Register fn(mutations), called after every batch of DOM changes. */
function onUiUpdate(callback) { uiUpdateCallbacks.push(callback); }
/* Register fn(), called 200 ms after the DOM stops changing (cheaper than onUiUpdate). */
function onAfterUiUpdate(callback) { uiAfterUpdateCallbacks.push(callback); }
/* Register fn(), called once the UI exists (#txt2img_prompt is in the page). */
function onUiLoaded(callback) { uiLoadedCallbacks.push(callback); }
/* Register fn(), called when the top-level tab changes. */
function onUiTabChange(callback) { uiTabChangeCallbacks.push(callback); }
/* Register fn(), called when the settings (opts) change. */
function onOptionsChanged(callback) { optionsChangedCallbacks.push(callback); }
/* Register fn(), called once opts are known (at once if they already are). */
function onOptionsAvailable(callback) {
    if (Object.keys(opts).length !== 0) {
        callback();
        return;
    }
    optionsAvailableCallbacks.push(callback);
}

function executeCallbacks(queue, arg) {
    for (const callback of queue) {
        try {
            callback(arg);
        } catch (e) {
            console.warn("error running callback", callback, ":", e);
        }
    }
}

var opts = {};
var localization = window.localization || {};
let settingsJsonText = null;

function readOptions() {
    const box = gradioApp().querySelector("#settings_json textarea, #settings_json input");
    if (!box || box.value === settingsJsonText || !box.value) {
        return;
    }
    settingsJsonText = box.value;
    const firstTime = Object.keys(opts).length === 0;
    try {
        opts = JSON.parse(box.value);
    } catch (e) {
        console.warn("could not read settings", e);
        return;
    }
    if (firstTime) {
        executeCallbacks(optionsAvailableCallbacks);
        optionsAvailableCallbacks.length = 0;
    }
    executeCallbacks(optionsChangedCallbacks);
}

function mainTabList() {
    const tabs = gradioApp().getElementById("tabs");
    return tabs ? tabs.querySelector('[role="tablist"]') : null;
}

/* The selected top-level tab button. */
function get_uiCurrentTab() {
    const list = mainTabList();
    return list ? list.querySelector('[role="tab"][aria-selected="true"]') : null;
}

/* The content element (#tab_<id>) of the selected top-level tab. */
function get_uiCurrentTabContent() {
    const panels = gradioApp().querySelectorAll('#tabs [id^="tab_"]');
    for (const panel of panels) {
        if (panel.parentElement && panel.parentElement.closest('[id^="tab_"]')) {
            continue;
        }
        if (uiElementIsVisible(panel)) {
            return panel;
        }
    }
    return null;
}

function uiElementIsVisible(el) {
    if (!el || el === document) {
        return true;
    }
    const style = window.getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden") {
        return false;
    }
    return el.parentElement ? uiElementIsVisible(el.parentElement) : true;
}

function uiElementInSight(el) {
    const rect = el.getBoundingClientRect();
    return rect.bottom > 0 && rect.top < (window.innerHeight || document.documentElement.clientHeight);
}

/* Tell Gradio that a script changed an input's value. */
function updateInput(target) {
    target.dispatchEvent(new Event("input", {bubbles: true}));
    target.dispatchEvent(new Event("change", {bubbles: true}));
}

function randomId() {
    const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let id = "";
    for (let i = 0; i < 7; i++) {
        id += chars[Math.floor(Math.random() * chars.length)];
    }
    return "task(" + id + ")";
}

function localSet(key, value) {
    try {
        localStorage.setItem(key, value);
    } catch (e) {
        console.warn("localStorage unavailable", e);
    }
}

function localGet(key, fallback) {
    try {
        const value = localStorage.getItem(key);
        return value === null ? fallback : value;
    } catch (e) {
        return fallback;
    }
}

function fireUiLoaded() {
    if (window.__uiLoadedFired) {
        return;
    }
    window.__uiLoadedFired = true;
    readOptions();
    executeCallbacks(uiLoadedCallbacks);
}

function scheduleAfterUiUpdate() {
    clearTimeout(uiAfterUpdateTimeout);
    uiAfterUpdateTimeout = setTimeout(() => executeCallbacks(uiAfterUpdateCallbacks), 200);
}

function startUiObserver() {
    const observer = new MutationObserver(function(mutations) {
        if (!window.__uiLoadedFired && gradioApp().querySelector("#txt2img_prompt")) {
            fireUiLoaded();
        }
        readOptions();
        executeCallbacks(uiUpdateCallbacks, mutations);
        scheduleAfterUiUpdate();
        const current = get_uiCurrentTab();
        if (current && current !== uiCurrentTab) {
            uiCurrentTab = current;
            executeCallbacks(uiTabChangeCallbacks);
        }
    });
    observer.observe(gradioApp(), {childList: true, subtree: true, attributes: true, characterData: true});
    if (gradioApp().querySelector("#txt2img_prompt")) {
        fireUiLoaded();
    }
}

// Gradio may add these scripts after DOMContentLoaded (it injects the page head itself).
if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", startUiObserver);
} else {
    startUiObserver();
}
