document.getElementById("status").textContent = "JavaScript loaded from /app.js.";
