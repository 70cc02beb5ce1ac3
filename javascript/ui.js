// A1111 helper functions extensions call: switching tabs, the selected gallery image, seeds,
// submit() pass-throughs and requestProgress() over /internal/progress.

function tabButton(label, root) {
    const list = root ? root.querySelector('[role="tablist"]') : mainTabList();
    if (!list) {
        return null;
    }
    for (const button of list.querySelectorAll('[role="tab"]')) {
        if (button.textContent.trim() === label) {
            return button;
        }
    }
    return null;
}

function switchToTab(label) {
    const button = tabButton(label);
    if (button) {
        button.click();
    }
}

function switch_to_txt2img() {
    switchToTab("txt2img");
    return Array.from(arguments);
}

function switchToImg2imgMode(mode) {
    switchToTab("img2img");
    const modes = gradioApp().getElementById("mode_img2img");
    const button = modes ? tabButton(mode, modes) : null;
    if (button) {
        button.click();
    }
}

function switch_to_img2img() {
    switchToImg2imgMode("img2img");
    return Array.from(arguments);
}

function switch_to_sketch() {
    switchToImg2imgMode("Sketch");
    return Array.from(arguments);
}

function switch_to_inpaint() {
    switchToImg2imgMode("Inpaint");
    return Array.from(arguments);
}

function switch_to_inpaint_sketch() {
    switchToImg2imgMode("Inpaint sketch");
    return Array.from(arguments);
}

function switch_to_extras() {
    switchToTab("Extras");
    return Array.from(arguments);
}

function get_tab_index(tabId) {
    const root = gradioApp().getElementById(tabId);
    const buttons = root ? root.querySelectorAll('[role="tab"]') : [];
    for (let i = 0; i < buttons.length; i++) {
        if (buttons[i].getAttribute("aria-selected") === "true") {
            return i;
        }
    }
    return 0;
}

function get_img2img_tab_index() {
    const args = Array.from(arguments);
    args.pop();
    args.push(get_tab_index("mode_img2img"));
    return args;
}

function currentGallery() {
    const content = get_uiCurrentTabContent();
    return content ? content.querySelector('[id$="_gallery"]') : null;
}

function all_gallery_buttons() {
    const gallery = currentGallery();
    return gallery ? Array.from(gallery.querySelectorAll("button.thumbnail-item, .thumbnail-item")) : [];
}

function selected_gallery_button() {
    return all_gallery_buttons().find((b) => b.classList.contains("selected")) || null;
}

function selected_gallery_index() {
    return all_gallery_buttons().findIndex((b) => b.classList.contains("selected"));
}

function extract_image_from_gallery(gallery) {
    if (!gallery || gallery.length === 0) {
        return [null];
    }
    const index = selected_gallery_index();
    return [gallery[index >= 0 && index < gallery.length ? index : 0]];
}

function setRandomSeed(elemId) {
    const input = gradioApp().querySelector("#" + elemId + " input");
    if (input) {
        input.value = "-1";
        updateInput(input);
    }
    return [];
}

// The generate buttons are plain Gradio events here; these keep extensions that call them working.
function submit() {
    return Array.from(arguments);
}

function submit_txt2img() {
    return Array.from(arguments);
}

function submit_img2img() {
    return Array.from(arguments);
}

function submit_extras() {
    return Array.from(arguments);
}

// 🗑️: A1111 asks before it empties both prompts; Cancel keeps them
function confirm_clear_prompt(prompt, negativePrompt) {
    if (confirm("Delete prompt?")) {
        return ["", ""];
    }
    return [prompt, negativePrompt];
}

function requestProgress(idTask, progressContainer, gallery, atEnd, onProgress) {
    function poll() {
        fetch("./internal/progress", {
            method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({id_task: idTask, live_preview: false}),
        }).then((r) => r.json()).then(function(res) {
            if (onProgress) {
                onProgress(res);
            }
            if (res.completed || (!res.active && !res.queued)) {
                if (atEnd) {
                    atEnd();
                }
                return;
            }
            setTimeout(poll, 500);
        }).catch(function() {
            if (atEnd) {
                atEnd();
            }
        });
    }
    poll();
}

// Extra network cards: a click adds the card's tag to the prompt (and its negative text, if any).
function extraNetworksAddText(textarea, text) {
    if (!textarea || !text) {
        return;
    }
    const current = textarea.value.trim();
    textarea.value = current ? current + " " + text : text;
    updateInput(textarea);
}

function extraNetworksCardClick(tab, tag, negative) {
    extraNetworksAddText(gradioApp().querySelector("#" + tab + "_prompt textarea"), tag);
    extraNetworksAddText(gradioApp().querySelector("#" + tab + "_neg_prompt textarea"), negative);
}

document.addEventListener("click", function(e) {
    const card = e.target && e.target.closest ? e.target.closest(".extra-network-cards .card") : null;
    if (card && card.dataset.args) {
        extraNetworksCardClick(...JSON.parse(card.dataset.args));
    }
});
