/* test_config.c — config.json parsing, presets, validation and derived quantities. */
#include <math.h>
#include <string.h>

#include "model/config.h"
#include "model/params.h"
#include "testutil.h"

int main(void) {
    v3_err err = {0};
    v3_config c;
    CHECK_OK(v3_config_preset(&c, "deepseek-v3-671b", &err), &err);
    /* model-spec §3: scale = 192^-0.5 * (0.1 ln 40 + 1)^2 = 0.13523378 */
    CHECK(fabs(v3_config_softmax_scale(&c) - 0.13523378) < 1e-7, "scale %.9f",
          v3_config_softmax_scale(&c));
    v3_param_counts pc;
    v3_config_count_params(&c, &pc);
    /* model-spec §1.1: main model 671.03B, ~37.5B active, MTP 11.6B unique */
    CHECK(fabs(pc.total / 1e9 - 671.03) < 0.01, "total %.3fB", pc.total / 1e9);
    CHECK(fabs(pc.active / 1e9 - 37.5) < 0.3, "active %.3fB", pc.active / 1e9);
    CHECK(fabs(pc.mtp / 1e9 - 11.6) < 0.1, "mtp %.3fB", pc.mtp / 1e9);
    v3_param_table t;
    CHECK_OK(v3_params_build(&t, &c, 1, &err), &err);
    /* model-spec §8: 91,991 tensors less the FP8 scale_inv entries. Count FP8 weights: every
     * LINEAR except the MTP eh_proj (bf16 in the release), i.e. tensors = linear + scales. */
    int n_linear_fp8 = 0;
    for (int i = 0; i < t.n; i++)
        if (t.p[i].kind == V3_PK_LINEAR && !strstr(t.p[i].name, "eh_proj")) n_linear_fp8++;
    CHECK(t.n + n_linear_fp8 == 91991, "tensors %d + scales %d != 91991", t.n, n_linear_fp8);
    CHECK(t.total == pc.total + pc.mtp + 2 * c.vocab_size * c.hidden_size, "table total %lld",
          (long long)t.total);
    /* hashed lookup agrees with the table order for every name */
    int found = 0;
    for (int i = 0; i < t.n; i++) found += v3_params_find(&t, t.p[i].name) == i;
    CHECK(found == t.n, "find: %d of %d", found, t.n);
    CHECK(v3_params_find(&t, "model.layers.61.eh_proj.weight") >= 0, "mtp eh_proj present");
    CHECK(v3_params_find(&t, "model.layers.3.mlp.experts.256.up_proj.weight") < 0, "no expert 256");
    v3_params_free(&t);

    /* YaRN: pairs i <= 10 keep theta_i, i >= 23 use theta_i / 40 (model-spec §4) */
    float inv[32];
    v3_config_rope_inv_freq(&c, inv);
    CHECK(fabsf(inv[0] - 1.0f) < 1e-7f, "inv[0] %g", inv[0]);
    CHECK(fabsf(inv[10] - powf(10000.f, -20.f / 64.f)) < 1e-7f, "inv[10] %g", inv[10]);
    CHECK(fabsf(inv[23] - powf(10000.f, -46.f / 64.f) / 40.f) < 1e-9f, "inv[23] %g", inv[23]);

    /* every preset validates */
    for (const char *const *p = v3_config_preset_names(); *p; p++)
        CHECK_OK(v3_config_preset(&c, *p, &err), &err);

    /* q_lora_rank null, n_group 1, no rope_scaling */
    const char *moon =
        "{\"model_type\":\"deepseek_v3\",\"vocab_size\":163840,\"hidden_size\":2048,"
        "\"intermediate_size\":11264,\"moe_intermediate_size\":1408,\"num_hidden_layers\":27,"
        "\"num_attention_heads\":16,\"q_lora_rank\":null,\"kv_lora_rank\":512,"
        "\"qk_nope_head_dim\":128,\"qk_rope_head_dim\":64,\"v_head_dim\":128,"
        "\"n_routed_experts\":64,\"n_shared_experts\":2,\"num_experts_per_tok\":6,\"n_group\":1,"
        "\"topk_group\":1,\"routed_scaling_factor\":2.446,\"scoring_func\":\"sigmoid\","
        "\"topk_method\":\"noaux_tc\",\"first_k_dense_replace\":1,\"rope_scaling\":null,"
        "\"num_nextn_predict_layers\":0,\"rope_theta\":50000.0}";
    CHECK_OK(v3_config_parse(&c, moon, "moonlight", &err), &err);
    CHECK(c.q_lora_rank == 0 && c.n_group == 1 && !c.rope_yarn && c.n_shared_experts == 2, "moonlight fields");

    /* refusals name the field */
    const char *v2 = "{\"scoring_func\":\"softmax\"}";
    int rc = v3_config_parse(&c, v2, "v2.json", &err);
    CHECK(rc == V3_EUNSUPPORTED && strstr(err.msg, "softmax") && strstr(err.msg, "v2.json"),
          "softmax refused: %s", err.msg);
    rc = v3_config_parse(&c, "{\"hidden_size\": \"big\"}", "x.json", &err);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, "hidden_size"), "type error: %s", err.msg);
    rc = v3_config_parse(&c, "{\"hidden_size\": 12,", "y.json", &err);
    CHECK(rc == V3_EFORMAT && strstr(err.msg, "y.json:"), "syntax error: %s", err.msg);
    rc = v3_config_parse(&c, "{\"n_group\": 7}", "z.json", &err);
    CHECK(rc == V3_EINVAL && strstr(err.msg, "n_group"), "divisibility: %s", err.msg);
    rc = v3_config_parse(&c, "{\"quantization_config\":{\"quant_method\":\"fp8\",\"fmt\":\"e4m3\","
                             "\"weight_block_size\":[128,128],\"activation_scheme\":\"dynamic\"}}",
                         "q.json", &err);
    CHECK(rc == 0 && c.quant_fp8 && c.quant_block[0] == 128, "fp8 quant config: %s", err.msg);

    /* round trip through config.json */
    char dir[256], path[300];
    t_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/config.json", dir);
    v3_config a, b;
    CHECK_OK(v3_config_preset(&a, "tiny", &err), &err);
    CHECK_OK(v3_config_save(&a, path, &err), &err);
    CHECK_OK(v3_config_load(&b, path, &err), &err);
    CHECK(a.hidden_size == b.hidden_size && a.q_lora_rank == b.q_lora_rank &&
              a.rope_factor == b.rope_factor && a.n_group == b.n_group &&
              a.routed_scaling_factor == b.routed_scaling_factor,
          "round trip");
    remove(path);
    remove(dir);
    return t_finish("test_config");
}
