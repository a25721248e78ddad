{
  "targets": [
    {
      "target_name": "devmove",
      # native/sources.json is the one list of addon sources; CMakeLists.txt reads it too.
      "sources": ["<!@(node -p \"require('./native/sources.json').join(' ')\")"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED",
        # native/limits.json as DEVMOVE_LIMIT_* (see native/limits.h).
        "<!@(node -p \"Object.entries(require('./native/limits.json')).map(([k, v]) => 'DEVMOVE_LIMIT_' + k.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase() + '=' + v).join(' ')\")"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fexceptions", "-fvisibility=hidden"],
      "conditions": [
        ["OS!='linux'", {"type": "none"}]
      ]
    }
  ]
}
