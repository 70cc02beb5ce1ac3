// A1111's right-click menus (appendContextMenuOption, used by extensions too) and the built-in
// entries on the Generate buttons: "Generate forever" clicks Generate again each time a job of
// that tab has ended, until "Cancel generate forever".

const contextMenuEntries = new Map(); // selector -> [{id, name, fn}]
let contextMenuCounter = 0;

function appendContextMenuOption(targetSelector, entryName, entryFunction) {
    const entries = contextMenuEntries.get(targetSelector) || [];
    const id = targetSelector + "_" + contextMenuCounter++;
    entries.push({id: id, name: entryName, fn: entryFunction});
    contextMenuEntries.set(targetSelector, entries);
    return id;
}

function removeContextMenuOption(id) {
    contextMenuEntries.forEach(function(entries, selector) {
        contextMenuEntries.set(selector, entries.filter((e) => e.id !== id));
    });
}

function hideContextMenu() {
    const menu = document.getElementById("context-menu");
    if (menu) {
        menu.remove();
    }
}

function showContextMenu(event, entries) {
    hideContextMenu();
    const menu = document.createElement("nav");
    menu.id = "context-menu";
    menu.style.left = event.pageX + "px";
    menu.style.top = event.pageY + "px";
    const list = document.createElement("ul");
    list.className = "context-menu-items";
    entries.forEach(function(entry) {
        const item = document.createElement("a");
        item.textContent = entry.name;
        item.addEventListener("click", function() {
            hideContextMenu();
            entry.fn();
        });
        const li = document.createElement("li");
        li.appendChild(item);
        list.appendChild(li);
    });
    menu.appendChild(list);
    document.body.appendChild(menu);
}

document.addEventListener("contextmenu", function(event) {
    for (const [selector, entries] of contextMenuEntries) {
        const target = gradioApp().querySelector(selector);
        if (target && target.contains(event.target) && entries.length) {
            event.preventDefault();
            showContextMenu(event, entries);
            return;
        }
    }
});

document.addEventListener("click", function(event) {
    // a user's click elsewhere closes the menu; Generate forever's own clicks on Generate do not
    if (event.isTrusted && (!event.target.closest || !event.target.closest("#context-menu"))) {
        hideContextMenu();
    }
});

// --- Generate forever ----------------------------------------------------------------------------

const generateForeverTimers = {};

function generateForeverState(tab) {
    const box = gradioApp().querySelector("#" + tab + "_task_id textarea, #" + tab + "_task_id input");
    const info = gradioApp().querySelector("#html_info_" + tab);
    return {running: Boolean(box && box.value), info: info ? info.innerHTML : ""};
}

function generateOnRepeat(tab) {
    cancelGenerateForever(tab);
    let pending = false; // clicked, and neither the job nor its result seen yet
    let infoAtClick = "";
    function step() {
        const state = generateForeverState(tab);
        if (state.running) {
            pending = false;
            return;
        }
        if (pending && state.info === infoAtClick) {
            return;
        }
        pending = true;
        infoAtClick = state.info;
        gradioApp().querySelector("#" + tab + "_generate").click();
    }
    step();
    generateForeverTimers[tab] = setInterval(step, 500);
}

function cancelGenerateForever(tab) {
    clearInterval(generateForeverTimers[tab]);
    delete generateForeverTimers[tab];
}

["txt2img", "img2img"].forEach(function(tab) {
    appendContextMenuOption("#" + tab + "_generate", "Generate forever", () => generateOnRepeat(tab));
    appendContextMenuOption("#" + tab + "_generate", "Cancel generate forever", () => cancelGenerateForever(tab));
});
