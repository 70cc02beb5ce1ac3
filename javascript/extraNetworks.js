// Extra network cards' own buttons (edit metadata, replace preview) and checkpoint cards.
// The action goes to the server through the tab's hidden action button; its click handler reads
// window.extraNetworksPendingAction (see modules/ui/extra_networks_edit.py).

function extraNetworksRequest(tab, action, page, name) {
    window.extraNetworksPendingAction = JSON.stringify({action: action, page: page, name: name, nonce: Date.now()});
    const button = gradioApp().querySelector("#" + tab + "_extra_action_button");
    if (button) {
        button.click();
    }
}

document.addEventListener("click", function(e) {
    const target = e.target && e.target.closest ? e.target : null;
    const card = target ? target.closest(".extra-network-cards .card") : null;
    if (!card) {
        return;
    }
    const button = target.closest(".card-button");
    if (button) {
        e.stopImmediatePropagation();
        extraNetworksRequest(card.dataset.tab, button.dataset.action, card.dataset.page, card.dataset.name);
    } else if (card.dataset.checkpoint) {
        e.stopImmediatePropagation();
        extraNetworksRequest(card.dataset.tab, "checkpoint", card.dataset.page, card.dataset.name);
    }
}, true);
