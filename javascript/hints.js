// A1111's `titles` (hints.js): hover text for buttons and labels, keyed by their visible text.
// Extensions add their own entries (titles["My button"] = "..."); every update applies them as
// the title attribute of matching buttons, labels and dropdown options that have none yet.

var titles = {
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
    "Generate": "Start generating with the settings shown (Ctrl+Enter)",
    "Interrupt": "Stop after the current step and keep what is done so far",
    "Skip": "Stop this image and go on with the next one of the batch",
    "Sampling method": "The sampler that turns noise into an image, step by step",
    "Sampling steps": "How many denoising steps: more take longer and change details less and less",
    "Batch count": "How many batches to make, one after the other",
    "Batch size": "How many images to make at once (uses more memory)",
    "CFG Scale": "How closely the image follows the prompt: higher is stricter, lower is freer",
    "Seed": "The start of the random noise: the same seed and settings make the same image",
    "Denoising strength": "How much img2img may change the input: 0 keeps it, 1 ignores it",
    "Hires. fix": "Generate small first, then upscale and refine the result",
};

function applyTitles() {
    const elements = gradioApp().querySelectorAll("button, span, label > span, select option, .gradio-dropdown li");
    for (const element of elements) {
        if (element.title) {
            continue;
        }
        const text = element.textContent.trim();
        const title = titles[text] || (element.value !== undefined && titles[element.value]);
        if (title && (element.children.length === 0 || element.tagName === "BUTTON")) {
            element.title = title;
        }
    }
}

onAfterUiUpdate(applyTitles);
