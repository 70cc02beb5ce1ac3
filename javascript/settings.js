// Settings page search (filters every page at once) and tooltips for the icon buttons.

function filterSettings(text) {
    const settings = gradioApp().getElementById("settings");
    if (!settings) {
        return;
    }
    const query = text.trim().toLowerCase();
    settings.classList.toggle("search-active", query !== "");
    for (const item of settings.querySelectorAll(".setting-item")) {
        const matches = query === "" || item.textContent.toLowerCase().indexOf(query) !== -1 ||
            (item.querySelector('[id^="setting_"]') || {id: ""}).id.toLowerCase().indexOf(query) !== -1;
        item.classList.toggle("search-hidden", !matches);
    }
}

// Gradio mounts a tab's components only once the tab was selected: search and "Show all pages"
// select every settings page once (then the one the user was on again), so all of them are there.
let settingsPagesRendered = null;

function settingsPageButtons(settings) {
    const wrapper = settings.querySelector(":scope > .tab-wrapper");
    if (!wrapper) {
        return [];
    }
    return Array.from(wrapper.querySelectorAll('[role="tablist"] button[role="tab"], .overflow-dropdown button'));
}

function nextFrame() {
    return new Promise(resolve => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

async function renderAllSettingsPages() {
    const settings = gradioApp().getElementById("settings");
    if (!settings) {
        return;
    }
    const selected = settings.querySelector(':scope > .tab-wrapper [role="tab"][aria-selected="true"]');
    const current = selected ? selected.textContent.trim() : null;
    const labels = settingsPageButtons(settings).map(b => b.textContent.trim());
    for (const label of labels) {
        const button = settingsPageButtons(settings).find(b => b.textContent.trim() === label);
        if (button) {
            button.click();
            await nextFrame();
        }
    }
    const back = settingsPageButtons(settings).find(b => b.textContent.trim() === current);
    if (back) {
        back.click();
        await nextFrame();
    }
    settings.classList.add("all-pages-rendered");
}

function ensureAllSettingsPages() {
    if (settingsPagesRendered === null) {
        settingsPagesRendered = renderAllSettingsPages();
    }
    return settingsPagesRendered;
}

async function settingsShowAllPages() {
    await ensureAllSettingsPages();
    gradioApp().getElementById("settings").classList.toggle("show-all-pages");
}

document.addEventListener("input", function(e) {
    if (e.target && e.target.closest && e.target.closest("#settings_search")) {
        const text = e.target.value;
        ensureAllSettingsPages().then(() => filterSettings(text));
    }
});
