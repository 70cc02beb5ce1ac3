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
    a1111TextareaShape();
    executeCallbacks(uiLoadedCallbacks);
}

/* Resolves once the DOM has been quiet for `quietMs` (or after `maxMs`). */
function domSettled(quietMs, maxMs) {
    return new Promise(function(resolve) {
        let timer = null;
        const observer = new MutationObserver(function() {
            clearTimeout(timer);
            timer = setTimeout(finish, quietMs);
        });
        const give_up = setTimeout(finish, maxMs);
        function finish() {
            observer.disconnect();
            clearTimeout(timer);
            clearTimeout(give_up);
            resolve();
        }
        observer.observe(gradioApp(), {childList: true, subtree: true});
        timer = setTimeout(finish, quietMs);
    });
}

/* Gradio 6 draws a tab's (and a closed accordion's) content only once it is first shown. A1111
   (Gradio 3) had all of it in the page, hidden, when onUiLoaded ran, and extensions bind to it
   then: select each tab of each tab bar once (nested ones as they appear), then the one that was
   selected before; open and close each closed accordion. The app is invisible while the top-level
   tabs switch; the later rounds happen inside hidden panels. */
async function renderAllTabs() {
    const app = document.querySelector("gradio-app") || document.body;
    const visibility = app.style.visibility;
    const seen = new Set();
    let userActed = false; // a person (or a test) clicks or types: leave the tabs to them
    const acted = (e) => { userActed = userActed || e.isTrusted; };
    document.addEventListener("pointerdown", acted, true);
    document.addEventListener("keydown", acted, true);
    app.style.visibility = "hidden";
    try {
        for (let round = 0; round < 5; round++) {
            const lists = Array.from(gradioApp().querySelectorAll('[role="tablist"]')).filter((l) => !seen.has(l));
            if (lists.length === 0) {
                break;
            }
            for (const list of lists) {
                seen.add(list);
                await selectEachTab(list, () => userActed);
            }
            await openEachAccordion(seen, () => userActed);
            app.style.visibility = visibility;
            await domSettled(100, 10000); // what the selected tabs started drawing
        }
    } finally {
        app.style.visibility = visibility;
        document.removeEventListener("pointerdown", acted, true);
        document.removeEventListener("keydown", acted, true);
    }
}

function nextFrame() {
    return new Promise((resolve) => requestAnimationFrame(() => resolve()));
}

/* A tab, once selected, keeps its content when another is selected: one frame each is enough to
   start drawing it, then the previously selected tab is selected again. */
async function selectEachTab(list, stop) {
    const byPanel = new Map();
    for (const button of list.querySelectorAll('[role="tab"]')) {
        const key = button.getAttribute("aria-controls") || button.textContent.trim();
        if (!byPanel.has(key) || button.offsetParent !== null) {
            byPanel.set(key, button);
        }
    }
    const buttons = Array.from(byPanel.values());
    const selected = buttons.find((b) => b.getAttribute("aria-selected") === "true");
    for (const button of buttons) {
        const panel = button.getAttribute("aria-controls");
        if (button === selected || button.disabled || (panel && gradioApp().querySelector("#" + CSS.escape(panel) + " > *"))) {
            continue;
        }
        if (stop()) {
            return;
        }
        button.click();
        await nextFrame();
    }
    if (selected && !stop() && selected.getAttribute("aria-selected") !== "true") {
        selected.click();
        await nextFrame();
    }
}

async function openEachAccordion(seen, stop) {
    for (const label of gradioApp().querySelectorAll(".gr-accordion > button.label-wrap")) {
        if (seen.has(label) || label.classList.contains("open")) {
            continue;
        }
        seen.add(label);
        if (stop()) {
            return;
        }
        label.click();
        await nextFrame();
        if (label.classList.contains("open")) {
            label.click();
        }
    }
}

/* A1111 (Gradio 3) put an HTML component's elem_id on the element holding its content, so an
   extension that empties `#id` and adds its own (infinite-image-browsing's iframe) replaced the
   content. Gradio 6 puts the id on the block around div.html-container, and the old content stays
   next to theirs: once the block holds an element Gradio did not make, its own content is hidden. */
function a1111HtmlShape() {
    for (const content of gradioApp().querySelectorAll(".block > .html-container:not(.a1111-replaced)")) {
        const foreign = Array.from(content.parentElement.children).some((el) =>
            el !== content && el.dataset.testid !== "status-tracker" &&
            !Array.from(el.classList).some((c) => c.startsWith("svelte-")));
        if (foreign) {
            content.classList.add("a1111-replaced");
        }
    }
}

/* A1111's selectors reach a textbox's textarea as `#id > label > textarea`; Gradio 6 wraps it in
   div.input-container. A textarea alone in that wrapper is moved up into the label. */
function a1111TextareaShape() {
    for (const textarea of gradioApp().querySelectorAll("label > div.input-container > textarea")) {
        const wrapper = textarea.parentElement;
        if (wrapper.children.length === 1) {
            wrapper.parentElement.insertBefore(textarea, wrapper);
            wrapper.classList.add("a1111-emptied");
        }
    }
}

function scheduleAfterUiUpdate() {
    clearTimeout(uiAfterUpdateTimeout);
    uiAfterUpdateTimeout = setTimeout(() => executeCallbacks(uiAfterUpdateCallbacks), 200);
}

function startUiObserver() {
    const observer = new MutationObserver(function(mutations) {
        startUiLoad();
        a1111TextareaShape();
        a1111HtmlShape();
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
    startUiLoad();
}

/* Once #txt2img_prompt is in the page: draw every tab, then run the onUiLoaded callbacks. */
function startUiLoad() {
    if (window.__uiLoadStarted || !gradioApp().querySelector("#txt2img_prompt")) {
        return;
    }
    window.__uiLoadStarted = true;
    renderAllTabs().catch((e) => console.warn("could not draw every tab", e)).then(fireUiLoaded);
}

// Gradio may add these scripts after DOMContentLoaded (it injects the page head itself).
if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", startUiObserver);
} else {
    startUiObserver();
}
