/* The Jupyter widget manager (@jupyter-widgets/html-manager) typesets widget labels through
   the MathJax 2 API, MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the book loads
   MathJax 3, which has no Hub, so every widget with a description threw "Cannot read
   properties of undefined (reading 'Queue')". This gives MathJax 3 a Hub whose Queue forwards
   to typesetPromise. Registered in _config.yml (html_js_files). */
(function () {
  "use strict";
  function install() {
    var mj = window.MathJax;
    if (!mj || !mj.version || mj.Hub) return; // no MathJax 3 (yet), or a real Hub
    mj.Hub = {
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (job) {
          if (!Array.isArray(job) || job[0] !== "Typeset") return;
          var element = job[2];
          var ready = (mj.startup && mj.startup.promise) || Promise.resolve();
          ready
            .then(function () {
              return mj.typesetPromise(element ? [element] : undefined);
            })
            .catch(function (err) {
              console.warn("MathJax could not typeset a widget:", err);
            });
        });
      },
    };
  }
  install();
  // MathJax is loaded with `defer`: it has replaced window.MathJax by DOMContentLoaded, and
  // the widget manager renders at `load`, after it
  document.addEventListener("DOMContentLoaded", install);
})();
