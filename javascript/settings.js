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

const uiButtonHints = {
    "🎲️": "Set seed to -1, which will cause a new random number to be used every time",
    "♻️": "Reuse seed from last generation, mostly useful if it was randomized",
    "↙️": "Read generation parameters from prompt or last generation if prompt is empty into user interface.",
    "🗑️": "Clear prompt",
    "🖌️": "Apply all selected styles to prompts",
    "🔄": "Refresh",
    "⇅": "Switch width/height",
    "📂": "Open images output directory",
    "💾": "Save the image to a dedicated directory (log/images)",
    "🗃️": "Save zip archive with images to a dedicated directory (log/images)",
    "🖼️": "Send image and generation parameters to img2img tab",
    "🎨️": "Send image and generation parameters to img2img inpaint tab",
    "📐": "Send image and generation parameters to extras tab",
};

onAfterUiUpdate(function() {
    for (const button of gradioApp().querySelectorAll("button.tool")) {
        const hint = uiButtonHints[button.textContent.trim()];
        if (hint && !button.title) {
            button.title = hint;
        }
    }
});
