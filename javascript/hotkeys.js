// Ctrl/Cmd+Enter generates, Alt+Enter skips, Esc interrupts (in a prompt box); pasting a whole
// infotext into a prompt box fills the tab's fields (as the ↙ button does).

function promptTab(target) {
    const box = target && target.closest ? target.closest('[id$="_prompt"], [id$="_neg_prompt"]') : null;
    if (!box) {
        return null;
    }
    const match = /^(txt2img|img2img)_/.exec(box.id);
    return match ? match[1] : null;
}

function clickIfPresent(id) {
    const button = gradioApp().getElementById(id);
    if (button && uiElementIsVisible(button)) {
        button.click();
        return true;
    }
    return false;
}

document.addEventListener("keydown", function(e) {
    const tab = promptTab(e.target);
    if (!tab) {
        return;
    }
    const isEnter = e.key === "Enter" || e.keyCode === 13;
    if (isEnter && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        clickIfPresent(tab + "_generate");
    } else if (isEnter && e.altKey) {
        e.preventDefault();
        clickIfPresent(tab + "_skip");
    } else if (e.key === "Escape") {
        clickIfPresent(tab + "_interrupt");
    }
});

function looksLikeInfotext(text) {
    const lines = text.trim().split("\n");
    const last = lines[lines.length - 1];
    return last.indexOf("Steps:") !== -1 && (last.match(/:/g) || []).length >= 3;
}

document.addEventListener("paste", function(e) {
    const tab = promptTab(e.target);
    if (!tab || !e.target.id && !e.target.closest('[id$="_prompt"]')) {
        return;
    }
    const text = (e.clipboardData || window.clipboardData).getData("text");
    if (!text || !looksLikeInfotext(text)) {
        return;
    }
    e.preventDefault();
    const textarea = gradioApp().querySelector("#" + tab + "_prompt textarea");
    textarea.value = text;
    updateInput(textarea);
    setTimeout(() => clickIfPresent(tab + "_paste"), 300);
});
