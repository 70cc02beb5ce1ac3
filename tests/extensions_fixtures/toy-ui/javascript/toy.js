// Toy extension: proves extension JavaScript runs once the UI is loaded (A1111 onUiLoaded).
onUiLoaded(function () {
    document.body.setAttribute("data-toy-ui-loaded", "yes");
    var marker = document.createElement("div");
    marker.id = "toy_js_marker";
    marker.textContent = "toy extension JS loaded";
    marker.style.display = "none";
    document.body.appendChild(marker);
});
