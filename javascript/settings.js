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

document.addEventListener("input", function(e) {
    if (e.target && e.target.closest && e.target.closest("#settings_search")) {
        filterSettings(e.target.value);
    }
});
