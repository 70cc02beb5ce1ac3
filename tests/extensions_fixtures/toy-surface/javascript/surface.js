// A1111 pattern: an extension's JavaScript loads its own data through /file= at onUiLoaded.
onUiLoaded(async () => {
    const response = await fetch("file=extensions/toy-surface/data/words.json");
    const data = response.ok ? await response.json() : {words: []};
    document.body.dataset.toySurfaceWords = data.words.join(",");
});
