// What A1111 extension JavaScript does at onUiLoaded: find every tab's panel and the prompts by
// A1111's selectors, use A1111's globals, add its own hover titles. The findings go to
// window.toyGradio3AtLoad for the browser test.
titles["Toy swap"] = "Toy: pick a";

onUiLoaded(function () {
    var app = gradioApp();
    var panels = {};
    ["txt2img", "img2img", "extras", "pnginfo", "modelmerger", "train", "settings", "extensions", "toy_g3_tab"].forEach(function (id) {
        panels[id] = !!app.querySelector("#tab_" + id + " > *");
    });
    var selectors = {};
    [
        "#txt2img_prompt > label > textarea",
        "#txt2img_neg_prompt > label > textarea",
        "#img2img_prompt > label > textarea",
        "#img2img_neg_prompt > label > textarea",
        "#tab_settings #settings_submit",
        "#txt2img_generate",
        "#img2img_generate",
        "#toy_g3_words_img2img textarea",
        "#toy_g3_tab_text textarea",
    ].forEach(function (selector) {
        selectors[selector] = !!app.querySelector(selector);
    });
    var globals = {};
    [
        "gradioApp", "get_uiCurrentTab", "get_uiCurrentTabContent", "onUiUpdate", "onAfterUiUpdate",
        "onOptionsChanged", "onUiTabChange", "switch_to_txt2img", "switch_to_img2img", "switch_to_extras",
        "updateInput", "uiElementIsVisible", "executeCallbacks",
    ].forEach(function (name) {
        globals[name] = typeof window[name];
    });
    globals.titles = typeof titles;
    globals.opts = typeof opts;
    window.toyGradio3AtLoad = {
        panels: panels,
        selectors: selectors,
        globals: globals,
        currentTab: get_uiCurrentTab() ? get_uiCurrentTab().textContent.trim() : null,
        modelOption: typeof opts.sd_model_checkpoint,
    };
});
