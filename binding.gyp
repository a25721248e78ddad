{
  "variables": {
    # 1 when this Node runs on glibc (not musl): the x86-64 and arm64 glibc binaries get the
    # symbol-version shims of native/glibc_compat.cc.
    "devmove_glibc%": "<!(node -p \"process.report.getReport().header.glibcVersionRuntime ? 1 : 0\")"
  },
  "targets": [
    {
      "target_name": "devmove",
      # native/sources.json is the one list of addon sources; CMakeLists.txt reads it too.
      # glibc_compat.cc is not an addon source: it only changes how the binary links.
      "sources": ["<!@(node -p \"require('./native/sources.json').join(' ')\")", "native/glibc_compat.cc"],
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
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fexceptions", "-fvisibility=hidden", "-fvisibility-inlines-hidden"],
      # The C++ runtime is linked in (the prebuilt binary must not need a newer
      # libstdc++ than the machine it lands on has; Node's own binary needs only
      # GLIBCXX_3.4.21) and kept private to the addon. libgcc_s stays shared: its
      # static unwinder would need glibc 2.35's _dl_find_object.
      "ldflags": ["-static-libstdc++", "-Wl,--exclude-libs,ALL"],
      "conditions": [
        ["OS!='linux'", {"type": "none"}],
        ["OS=='linux' and target_arch in ('x64', 'arm64') and devmove_glibc==1", {
          "defines": ["DEVMOVE_GLIBC_COMPAT"],
          "ldflags": [
            "-Wl,--wrap=pthread_create,--wrap=pthread_join,--wrap=pthread_detach,--wrap=pthread_once,--wrap=__pthread_key_create,--wrap=pthread_sigmask",
            "-Wl,--wrap=pthread_key_create,--wrap=pthread_key_delete,--wrap=pthread_getspecific,--wrap=pthread_setspecific",
            "-Wl,--wrap=dlopen,--wrap=dlsym,--wrap=dlerror,--wrap=dlclose",
            "-Wl,--wrap=stat64,--wrap=lstat64,--wrap=fstat64,--wrap=getentropy,--wrap=arc4random"
          ]
        }]
      ]
    }
  ]
}
