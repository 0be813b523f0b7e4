// fake_apiserver.py as a child process, for tests of the Kubernetes client and its users.
//
// Each FakeApiServer starts its own server (ephemeral port; its own CA or one shared by the test
// binary) and drives it through its stdin/stdout JSON commands (see fake_apiserver.py).
// KDP_FAKE_APISERVER names the script; by default it sits beside this header.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/k8s/kubeconfig.h"

namespace kdp::control::k8s::test {

using nlohmann::json;
using std::chrono::milliseconds;

inline constexpr auto kWait = std::chrono::seconds(10);
inline constexpr const char* kToken = "s3cret-token";

inline std::string read_text(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// fake_apiserver.py as a child process; commands go to its stdin, replies come from its stdout.
class FakeApiServer {
public:
    // `own_certs`: a fresh CA for this server; otherwise one set shared by the whole binary.
    explicit FakeApiServer(std::vector<std::string> extra_args = {}, bool own_certs = false) {
        std::string tmpl = std::filesystem::temp_directory_path() / "kdp-fake-apiserver-XXXXXX";
        dir_ = ::mkdtemp(tmpl.data());
        if (!own_certs) {
            static const std::filesystem::path shared = [] {
                std::string t = std::filesystem::temp_directory_path() / "kdp-fake-certs-XXXXXX";
                std::filesystem::path p = ::mkdtemp(t.data());
                // Constructed before atexit registers, so it is destroyed after the handler runs.
                shared_dir_for_cleanup() = p;
                std::atexit([] { std::filesystem::remove_all(shared_dir_for_cleanup()); });
                return p;
            }();
            std::filesystem::remove(dir_);
            std::filesystem::create_directory_symlink(shared, dir_);
        }
        const char* script = std::getenv("KDP_FAKE_APISERVER");
        const std::string script_path =
            script != nullptr
                ? script
                : (std::filesystem::path(__FILE__).parent_path() / "fake_apiserver.py").string();
        int in[2];
        int out[2];
        if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
            throw std::runtime_error("pipe failed");
        }
        std::vector<std::string> args = {"python3",     script_path, "--dir",
                                         dir_.string(), "--token",   kToken};
        args.insert(args.end(), extra_args.begin(), extra_args.end());
        pid_ = ::fork();
        if (pid_ == 0) {
            ::dup2(in[0], 0);
            ::dup2(out[1], 1);
            std::vector<char*> argv;
            for (auto& a : args) {
                argv.push_back(a.data());
            }
            argv.push_back(nullptr);
            ::execvp("python3", argv.data());
            ::_exit(127);
        }
        ::close(in[0]);
        ::close(out[1]);
        to_ = ::fdopen(in[1], "w");
        from_ = ::fdopen(out[0], "r");
        hello_ = json::parse(read_line());
    }
    ~FakeApiServer() {
        std::fclose(to_);  // EOF on stdin stops the server
        std::fclose(from_);
        int status = 0;
        for (int i = 0; i < 50 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
            std::this_thread::sleep_for(milliseconds(20));
        }
        if (::waitpid(pid_, &status, WNOHANG) == 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
        }
        if (std::filesystem::is_symlink(dir_)) {
            std::filesystem::remove(dir_);
        } else {
            std::filesystem::remove_all(dir_);
        }
    }

    json cmd(const json& c) {
        const std::string line = c.dump() + "\n";
        std::fputs(line.c_str(), to_);
        std::fflush(to_);
        json reply = json::parse(read_line());
        EXPECT_FALSE(reply.contains("error")) << c.dump() << " -> " << reply.dump();
        return reply;
    }
    void create(const std::string& path, json obj) {
        cmd({{"op", "create"}, {"path", path}, {"object", std::move(obj)}});
    }

    // A config that trusts this server's CA and carries its token.
    ClusterConfig config() const {
        ClusterConfig c;
        parse_server_url(fmt::format("https://127.0.0.1:{}", hello_["port"].get<int>()), c);
        c.ca_pem = read_text(hello_["ca"].get<std::string>());
        c.token = kToken;
        return c;
    }
    std::string file(const char* which) const { return hello_[which].get<std::string>(); }
    const std::filesystem::path& dir() const { return dir_; }

    // Polls until `pred(reply of cmd)` holds.
    bool wait_cmd(const json& c, const std::function<bool(const json&)>& pred) {
        const auto until = std::chrono::steady_clock::now() + kWait;
        while (std::chrono::steady_clock::now() < until) {
            if (pred(cmd(c))) {
                return true;
            }
            std::this_thread::sleep_for(milliseconds(10));
        }
        return false;
    }
    bool wait_watchers(int n) {
        return wait_cmd({{"op", "watchers"}}, [n](const json& r) { return r["watchers"] == n; });
    }
    json requests() { return cmd({{"op", "requests"}})["requests"]; }

private:
    static std::filesystem::path& shared_dir_for_cleanup() {
        static std::filesystem::path p;
        return p;
    }
    std::string read_line() {
        char* buf = nullptr;
        size_t cap = 0;
        const ssize_t n = ::getline(&buf, &cap, from_);
        std::string line = n > 0 ? std::string(buf, size_t(n)) : std::string("{\"error\":\"eof\"}");
        std::free(buf);
        return line;
    }

    std::filesystem::path dir_;
    pid_t pid_ = -1;
    FILE* to_ = nullptr;
    FILE* from_ = nullptr;
    json hello_;
};

}  // namespace kdp::control::k8s::test
