// infinite-image-browsing's pattern: empty an HTML component's #elem_id element (forEach over the
// live childNodes, as it does) and put the extension's own content there.
onUiLoaded(function () {
    var wrap = gradioApp().querySelector("#toy_send_html");
    if (!wrap) {
        return;
    }
    wrap.childNodes.forEach(function (node) {
        wrap.removeChild(node);
    });
    var own = document.createElement("div");
    own.id = "toy_send_own";
    own.textContent = "toy own content";
    wrap.appendChild(own);
});
