// A1111's completion signals: when a generation's images arrive in a results gallery, play
// notification.mp3 (setting notification_audio, volume notification_volume; the <audio> element
// is on the page only when the file is in the data folder) and, when the page is not focused and
// the user allowed it (Settings → Actions → Request browser notifications), show a notification.

let lastNotifiedImage = null;
let notificationsReady = false;

function requestNotificationPermission() {
    if ("Notification" in window) {
        Notification.requestPermission();
    }
}

function galleryPreviews() {
    return gradioApp().querySelectorAll('div[id$="_results"] div[id$="_gallery"] img');
}

onUiLoaded(function() {
    const previews = galleryPreviews(); // what a page shows when it loads is no completion
    lastNotifiedImage = previews.length ? previews[0].src : null;
    notificationsReady = true;
});

onAfterUiUpdate(function() {
    const previews = galleryPreviews();
    const head = previews.length ? previews[0].src : null;
    if (!notificationsReady || !head || head === lastNotifiedImage) {
        return;
    }
    lastNotifiedImage = head;
    const audio = gradioApp().querySelector("#audio_notification");
    if (audio) {
        audio.volume = Math.min(1, Math.max(0, (opts.notification_volume ?? 100) / 100));
        audio.currentTime = 0;
        const played = audio.play();
        if (played && played.catch) {
            played.catch(() => {}); // the browser may refuse sound before the user interacted
        }
    }
    if (document.hasFocus() || !("Notification" in window) || Notification.permission !== "granted") {
        return;
    }
    const shown = new Set(Array.from(previews).map((img) => img.src)).size;
    const count = shown > 1 && opts.return_grid ? shown - 1 : shown; // the grid is no image of its own
    const notification = new Notification("Stable Diffusion", {
        body: `Generated ${count} image${count > 1 ? "s" : ""}`,
        icon: head,
        image: head,
    });
    notification.onclick = function() {
        parent.focus();
        this.close();
    };
});
